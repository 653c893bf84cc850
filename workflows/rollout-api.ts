/**
 * The rollout workflow's public surface: its input, state and result, the query and updates the CLI and the Web UI
 * use to watch and steer it, and its id. Deterministic and free of I/O, so clients and the workflow share it.
 */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { LoadTestResult } from '../activities/contracts';
import type { AnalysisResult } from '../lib/rollout/analysis';
import type { RolloutConfigInput } from '../lib/rollout/config';

export interface RolloutInput {
  model: string;
  version: string;
  config?: RolloutConfigInput;
  /** What started it: `continuousTraining <workflow id>`, `cli <user>`. */
  startedBy?: string;
}

export type RolloutPhase =
  | 'starting'
  | 'waiting-for-environment'
  | 'staging'
  | 'canary'
  | 'awaiting-traffic-decision'
  | 'awaiting-approval'
  | 'promoting'
  | 'promoted'
  | 'rolling-back'
  | 'rolled-back'
  | 'already-champion';

export type RolloutOutcome = 'promoted' | 'rolled-back' | 'already-champion';

export interface Decision {
  by: string;
  reason: string;
}

export interface RolloutEvent {
  at: string;
  what: string;
}

export interface CanaryStepAnalysis {
  step: number;
  weight: number;
  at: string;
  result: AnalysisResult;
}

export interface RolloutState {
  model: string;
  version: string;
  baseline?: string;
  phase: RolloutPhase;
  /** 1-based canary step while in canary. */
  step?: { index: number; of: number; weight: number };
  /** Production traffic split as last applied, version → percent. */
  weights: Record<string, number>;
  staging?: LoadTestResult;
  latestAnalysis?: AnalysisResult;
  analyses: CanaryStepAnalysis[];
  decision?: Decision & { verdict: 'approve' | 'reject'; at: string };
  outcome?: RolloutOutcome;
  reason?: string;
  events: RolloutEvent[];
}

export interface RolloutResult {
  outcome: RolloutOutcome;
  reason: string;
  model: string;
  version: string;
  baseline?: string;
  decision?: RolloutState['decision'];
  analyses: RolloutState['analyses'];
  staging?: LoadTestResult;
  events: RolloutEvent[];
}

export const rolloutStateQuery = defineQuery<RolloutState>('state');
export const approveUpdate = defineUpdate<RolloutState, [Decision]>('approve');
export const rejectUpdate = defineUpdate<RolloutState, [Decision]>('reject');
export const abortUpdate = defineUpdate<RolloutState, [Decision]>('abort');

/** The meaningful, deduplicating id of a rollout: one per model version. */
export const rolloutWorkflowId = (model: string, version: string) => `rollout-${model}-v${version}`;
