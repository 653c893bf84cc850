/**
 * The drift monitor's public surface: its input and the state it carries across continue-as-new, the query, signals
 * and update the CLI and the Web UI use to watch and steer it, and its id. Deterministic and free of I/O.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { DriftConfig, DriftConfigInput } from '../lib/drift/config';
import type { DriftStatus, WindowVerdict } from '../lib/drift/evaluate';
import type { RetrainOverrides } from './retrain-api';

export interface DriftMonitorInput {
  model: string;
  /** The serving environment watched (default production). */
  env?: string;
  config?: DriftConfigInput;
  /** What the retrains it starts change from the champion's recipe (validation, gates, rollout config, ...). */
  retrain?: RetrainOverrides;
  /** Carried over by continue-as-new; never given by a caller. */
  state?: DriftMonitorState;
}

/** The reference the windows are judged against: the champion's data defines the buckets, its first windows the mix. */
export interface DriftBaseline {
  championVersion: string;
  datasetUri: string;
  datasetVersion: string;
  /** Summaries of the windows that make up the baseline (baselineWindows of them when complete). */
  windowUris: string[];
  /** Set when a re-baseline was asked for or champion moved, for humans. */
  reason: string;
  /** Only windows that start at or after this instant (epoch ms) become the baseline: earlier ones hold old traffic. */
  sinceMs: number;
  since: string;
}

export interface WindowRecord extends WindowVerdict {
  summaryUri?: string;
  reportUri?: string;
  /** What the monitor did about it: a retrain started or absorbed, suppressed (and why), or nothing. */
  action?: string;
}

export interface DriftMonitorState {
  config: DriftConfig;
  retrainOverrides?: RetrainOverrides;
  /** Start (epoch ms) of the next window to judge. */
  nextWindowStartMs: number;
  paused: boolean;
  pauseReason?: string;
  baseline: DriftBaseline | null;
  /** Re-baseline at the next window (asked by a signal). */
  rebaseline?: { reason: string; atMs: number };
  /** The latest windows, oldest first (bounded). */
  windows: WindowRecord[];
  lastRetrain?: { atMs: number; workflowId: string; reportUri?: string; outcome: 'started' | 'absorbed' };
  counts: {
    windows: number;
    drift: number;
    insufficient: number;
    retrainsStarted: number;
    absorbed: number;
    suppressed: number;
  };
}

export type MonitorStatus = DriftStatus | 'paused' | 'starting';

export interface DriftMonitorView {
  model: string;
  env: string;
  status: MonitorStatus;
  nextWindowAt: string;
  state: DriftMonitorState;
}

export const driftStatusQuery = defineQuery<DriftMonitorView>('driftStatus');
export const pauseSignal = defineSignal<[{ reason?: string }?]>('pause');
export const resumeSignal = defineSignal<[]>('resume');
export const rebaselineSignal = defineSignal<[{ reason?: string }?]>('rebaseline');
/** Changes the config (fields given replace the current ones); answers the new config, or rejects naming the field. */
export const configureUpdate = defineUpdate<DriftConfig, [DriftConfigInput]>('configure');

/** `drift-monitor-<model>-<environment>`. */
export const driftMonitorId = (model: string, env: string): string => `drift-monitor-${model}-${env}`;

/** How many windows the monitor keeps in its state (the persistence rule needs m <= 20 of them). */
export const KEPT_WINDOWS = 24;
