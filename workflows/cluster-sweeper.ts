/**
 * clusterSweeper: run by a Temporal Schedule (`recsys cluster sweeper`), it destroys every training cluster whose
 * owning workflow is no longer running: what a worker killed mid-release, a terminated workflow or a crashed
 * controller left behind. The saga releases its own cluster; this is the net under it.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { SweptCluster } from '../activities/contracts';
import { sweepOptions } from './activity-options';

const { sweepClusters } = proxyActivities<Activities>(sweepOptions);

export async function clusterSweeper(input: { dryRun?: boolean } = {}): Promise<SweptCluster[]> {
  return sweepClusters(input);
}
