/**
 * Canary analysis activity: the canary's and the baseline's figures over the window since the step began, from the
 * stack's Prometheus (fleet/canary-window.ts: PromQL increase() over every production replica), compared by
 * lib/rollout/analysis.ts on errors, p99 and click-through. Every replica must be serving when the window closes: one
 * that is down fails the activity with `ReplicaUnavailable`, the rollout's cue to roll back.
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { AnalysisConfig } from '../lib/rollout/config';
import { analyseCanary, type VersionWindow } from '../lib/rollout/analysis';
import { PrometheusClient } from '../lib/prometheus';
import { canaryWindowStats } from '../fleet/canary-window';
import { checkServing, envOf } from '../fleet/environment';
import { FleetError } from '../fleet/errors';
import type { WindowStats } from '../fleet/version-metrics';
import type { EnvName } from '../fleet/environments';
import type { CanaryAnalysis } from './contracts';
import type { ActivityDeps } from './deps';

const toWindow = (w: WindowStats | undefined): VersionWindow => ({
  requests: w?.requests ?? 0,
  errors: w?.errors ?? 0,
  p99Ms: w?.p99Ms ?? 0,
  clicks: w?.clicks ?? 0,
  impressions: w?.eligible ?? 0,
});

export interface CanaryWindowRequest {
  env: EnvName;
  model: string;
  /** Epoch ms when the step's traffic split took effect: the window runs from here to now. */
  sinceMs: number;
  canary: string;
  baseline: string;
  config: AnalysisConfig;
}

export function rolloutAnalysisActivities(deps: ActivityDeps) {
  const prometheus = new PrometheusClient(deps.config.prometheusUrl);
  return {
    analyseCanaryWindow: async (input: CanaryWindowRequest): Promise<CanaryAnalysis> => {
      const untilMs = Date.now();
      const env = envOf(input.env);
      try {
        await checkServing({ env });
      } catch (err) {
        if (err instanceof FleetError) throw ApplicationFailure.nonRetryable(err.message, err.type, err.details);
        throw err;
      }
      const stats = await canaryWindowStats(prometheus, {
        env,
        model: input.model,
        versions: [input.canary, input.baseline],
        sinceMs: input.sinceMs,
        untilMs,
      });
      const result = analyseCanary(toWindow(stats[input.canary]), toWindow(stats[input.baseline]), input.config);
      return { result, window: { sinceMs: input.sinceMs, untilMs } };
    },
  };
}
