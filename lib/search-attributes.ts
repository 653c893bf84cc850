/** Custom search attributes (registered by infra/stack.sh) so the Web UI can filter workflows by model and stage. */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const RecsysModel = defineSearchAttributeKey('RecsysModel', SearchAttributeType.KEYWORD);
export const RecsysModelVersion = defineSearchAttributeKey('RecsysModelVersion', SearchAttributeType.KEYWORD);
export const RecsysDatasetVersion = defineSearchAttributeKey('RecsysDatasetVersion', SearchAttributeType.KEYWORD);
export const RecsysStage = defineSearchAttributeKey('RecsysStage', SearchAttributeType.KEYWORD);
export const RecsysTrigger = defineSearchAttributeKey('RecsysTrigger', SearchAttributeType.KEYWORD);
/** A drift monitor's latest window: ok, warning, drift, insufficient-data (or paused). */
export const RecsysDrift = defineSearchAttributeKey('RecsysDrift', SearchAttributeType.KEYWORD);
/** A provisioned training cluster's phase (leasing, applying, configuring, training, releasing, released, failed). */
export const RecsysClusterPhase = defineSearchAttributeKey('RecsysClusterPhase', SearchAttributeType.KEYWORD);
export const RecsysClusterNodes = defineSearchAttributeKey('RecsysClusterNodes', SearchAttributeType.INT);
/** The cost clock: nodes × hours since they were created, updated while they exist. */
export const RecsysNodeHours = defineSearchAttributeKey('RecsysNodeHours', SearchAttributeType.DOUBLE);
