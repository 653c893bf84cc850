/**
 * Canary analysis activity: the analysis of the window since a snapshot of the per-version serving metrics
 * (`scrapeVersionMetrics`: every replica scraped and summed) — canary vs baseline on errors, p99 and
 * click-through (lib/rollout/analysis.ts). A replica that does not answer fails with `ReplicaUnavailable`.
 */
import type { AnalysisConfig } from '../lib/rollout/config';
import { analyseCanary, type VersionWindow } from '../lib/rollout/analysis';
import { windowStats, type MetricsSnapshot, type WindowStats } from '../fleet/version-metrics';
import type { EnvName } from '../fleet/environments';
import type { CanaryAnalysis } from './contracts';
import type { ActivityDeps } from './deps';
import { deployActivities } from './deploy';

const toWindow = (w: WindowStats | undefined): VersionWindow => ({
  requests: w?.requests ?? 0,
  errors: w?.errors ?? 0,
  p99Ms: w?.p99Ms ?? 0,
  clicks: w?.clicks ?? 0,
  impressions: w?.eligible ?? 0,
});

export function rolloutAnalysisActivities(deps: ActivityDeps) {
  const { scrapeVersionMetrics } = deployActivities(deps);
  return {
    analyseCanaryWindow: async (input: {
      env: EnvName;
      before: MetricsSnapshot;
      canary: string;
      baseline: string;
      config: AnalysisConfig;
    }): Promise<CanaryAnalysis> => {
      const after = await scrapeVersionMetrics({ env: input.env });
      const stats = windowStats(input.before, after);
      const result = analyseCanary(toWindow(stats[input.canary]), toWindow(stats[input.baseline]), input.config);
      return { result, after };
    },
  };
}
