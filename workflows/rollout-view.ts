/** The rollout as Markdown in the workflow's current details (the Web UI's workflow page). */
import { setCurrentDetails } from '@temporalio/workflow';
import type { RolloutState } from './rollout-api';

export function showRollout(s: RolloutState): void {
  const weights = Object.entries(s.weights)
    .map(([v, w]) => `v${v} ${w}%`)
    .join(' / ');
  const header = [
    `**${s.phase}**${s.step && s.phase === 'canary' ? ` step ${s.step.index}/${s.step.of} (${s.step.weight}%)` : ''}` +
      ` — ${s.model} v${s.version}${s.baseline ? ` vs champion v${s.baseline}` : ''}`,
    weights ? `production: ${weights}` : '',
    s.latestAnalysis ? `latest analysis: ${s.latestAnalysis.summary}` : '',
    s.reason ? `outcome: ${s.outcome} — ${s.reason}` : '',
  ].filter(Boolean);
  const events = s.events.slice(-8).map((e) => `- ${e.at.slice(11, 19)} ${e.what}`);
  setCurrentDetails([...header, '', ...events].join('\n'));
}

export const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
export const ms = (x: number | null) => (x === null ? 'n/a' : `${x.toFixed(1)} ms`);
