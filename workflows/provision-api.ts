/**
 * The provisionTraining workflow's public surface: input, result, the `clusterState` query and its id. Deterministic
 * and free of I/O.
 */
import { defineQuery } from '@temporalio/workflow';
import type { ClusterSpec, ProvisionStep, TrainInput, TrainResult } from '../activities/contracts';

export interface ProvisionTrainingInput {
  /** What to train; the cluster is added by the workflow. */
  train: Omit<TrainInput, 'cluster'>;
  cluster: ClusterSpec;
  /** Fail right after this step (tests, game days): whatever it made must be undone like any failure's. */
  injectFault?: ProvisionStep;
}

export type ClusterPhase =
  'leasing' | 'waiting-for-lease' | 'applying' | 'configuring' | 'training' | 'releasing' | 'released' | 'failed';

export interface StepTiming {
  step: string;
  seconds: number;
}

export interface ClusterState {
  clusterId: string;
  target: ClusterSpec['target'];
  phase: ClusterPhase;
  /** rank → private address, once the nodes exist. */
  nodes: string[];
  /** nodes × hours since they were created (until released). */
  nodeHours: number;
  steps: StepTiming[];
  /** Undo steps that ran, in the order they ran, and any that failed. */
  undone: string[];
  undoFailed: string[];
}

export interface ProvisionTrainingResult {
  training: TrainResult;
  cluster: ClusterState;
}

export const clusterStateQuery = defineQuery<ClusterState>('clusterState');

/** One provisioning per owning workflow run (continuousTraining's id). */
export const provisionWorkflowId = (ownerWorkflowId: string): string => `provision-${ownerWorkflowId}`;

/** The sweeper's schedule and workflow ids. */
export const CLUSTER_SWEEPER_SCHEDULE_ID = 'cluster-sweeper';
