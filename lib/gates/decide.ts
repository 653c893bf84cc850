/**
 * Promotion gates as a pure function: evaluation figures (with confidence intervals) + a gate config → a decision
 * with one line per gate saying what was compared with what. No I/O, so it is unit-tested exhaustively and its
 * result is the same wherever it runs.
 */
import type { GateConfig, GateMetric } from './config';

/** A point estimate with its 95% bootstrap confidence interval. */
export interface Interval {
  point: number;
  lo: number;
  hi: number;
}

/** A paired difference (model − baseline over the same users) and, where the baseline is positive, its relative form. */
export interface Difference extends Interval {
  relative?: Interval;
}

export interface SliceFigures {
  name: string;
  nUsers: number;
  vsPopularity: Partial<Record<GateMetric, Difference>>;
  vsChampion?: Partial<Record<GateMetric, Difference>>;
}

export interface GateInputs {
  model: Partial<Record<GateMetric, Interval>>;
  vsPopularity: Partial<Record<GateMetric, Difference>>;
  /** Absent when there is no champion yet (the first model of its name). */
  champion?: { version: string; vsChampion: Partial<Record<GateMetric, Difference>> };
  slices: SliceFigures[];
}

export interface GateCheck {
  /** e.g. `absolute ndcg@10`, `vs popularity`, `vs champion`, `slice heavy vs champion`. */
  gate: string;
  outcome: 'pass' | 'fail' | 'skipped';
  /** What was observed and what it was held to, in words. */
  detail: string;
}

export interface GateDecision {
  passed: boolean;
  checks: GateCheck[];
  /** One line for the Web UI and the registry: which gates failed, or that all passed. */
  summary: string;
}

const f = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : String(x));
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const ci = (i: Interval) => `${f(i.point)} [${f(i.lo)}, ${f(i.hi)}]`;
const relCi = (i: Interval) => `${pct(i.point)} [${pct(i.lo)}, ${pct(i.hi)}]`;

function improvementCheck(
  gate: string,
  metric: GateMetric,
  diff: Difference | undefined,
  minAbsolute: number | undefined,
  minRelative: number | undefined,
): GateCheck {
  if (!diff) return { gate, outcome: 'fail', detail: `no figures for ${metric}` };
  const reasons: string[] = [];
  const held: string[] = [];
  if (minAbsolute !== undefined) {
    held.push(`Δ${metric} ${ci(diff)} needs lower bound > ${f(minAbsolute)}`);
    if (!(diff.lo > minAbsolute)) reasons.push(`Δ${metric} lower bound ${f(diff.lo)} ≤ ${f(minAbsolute)}`);
  }
  if (minRelative !== undefined) {
    if (!diff.relative) reasons.push(`relative Δ${metric} undefined (baseline is 0)`);
    else {
      held.push(`relative Δ ${relCi(diff.relative)} needs lower bound > ${pct(minRelative)}`);
      if (!(diff.relative.lo > minRelative))
        reasons.push(`relative Δ${metric} lower bound ${pct(diff.relative.lo)} ≤ ${pct(minRelative)}`);
    }
  }
  if (held.length === 0 && reasons.length === 0) return { gate, outcome: 'skipped', detail: 'no threshold set' };
  return reasons.length === 0
    ? { gate, outcome: 'pass', detail: held.join('; ') }
    : { gate, outcome: 'fail', detail: reasons.join('; ') + ` (Δ ${ci(diff)})` };
}

export function decidePromotion(inputs: GateInputs, config: GateConfig): GateDecision {
  const checks: GateCheck[] = [];

  for (const [metric, floor] of Object.entries(config.absolute) as [GateMetric, number][]) {
    const gate = `absolute ${metric}`;
    const value = inputs.model[metric];
    if (!value) checks.push({ gate, outcome: 'fail', detail: `no figures for ${metric}` });
    else
      checks.push({
        gate,
        outcome: value.lo >= floor ? 'pass' : 'fail',
        detail: `${metric} ${ci(value)}, lower bound ${value.lo >= floor ? '≥' : '<'} floor ${f(floor)}`,
      });
  }

  // An improvement gate on a slice judges that slice's users; a slice the evaluation does not have fails, named.
  const sliceOf = (name: string) => inputs.slices.find((s) => s.name === name);
  const missing = (gate: string, name: string): GateCheck => ({
    gate,
    outcome: 'fail',
    detail: `no slice ${name} in the evaluation (slices: ${inputs.slices.map((s) => s.name).join(', ') || 'none'})`,
  });
  const on = (gate: string, slice: string | undefined) => (slice ? `${gate} (${slice})` : gate);

  const pop = config.vsPopularity;
  const popGate = on('vs popularity', pop.slice);
  if (pop.slice && !sliceOf(pop.slice)) checks.push(missing(popGate, pop.slice));
  else {
    const diffs = pop.slice ? sliceOf(pop.slice)!.vsPopularity : inputs.vsPopularity;
    checks.push(improvementCheck(popGate, pop.metric, diffs[pop.metric], pop.minAbsolute, pop.minRelative));
  }

  const champ = config.vsChampion;
  if (!inputs.champion)
    checks.push({ gate: 'vs champion', outcome: 'skipped', detail: 'no champion yet: nothing to compare with' });
  else {
    const gate = on(`vs champion v${inputs.champion.version}`, champ.slice);
    if (champ.slice && !sliceOf(champ.slice)) checks.push(missing(gate, champ.slice));
    else {
      const diffs = champ.slice ? sliceOf(champ.slice)!.vsChampion : inputs.champion.vsChampion;
      checks.push(improvementCheck(gate, champ.metric, diffs?.[champ.metric], champ.minAbsolute, champ.minRelative));
    }
  }

  const sr = config.sliceRegression;
  for (const slice of inputs.slices) {
    for (const against of sr.against) {
      const gate = `slice ${slice.name} vs ${against}`;
      const diffs = against === 'champion' ? slice.vsChampion : slice.vsPopularity;
      if (against === 'champion' && !inputs.champion) continue;
      if (slice.nUsers < sr.minUsers) {
        checks.push({ gate, outcome: 'skipped', detail: `${slice.nUsers} users < ${sr.minUsers}: not judged` });
        continue;
      }
      const rel = diffs?.[sr.metric]?.relative;
      if (!rel) {
        checks.push({ gate, outcome: 'skipped', detail: `no relative ${sr.metric} difference (baseline is 0)` });
        continue;
      }
      const proven = rel.hi < -sr.maxRelative;
      checks.push({
        gate,
        outcome: proven ? 'fail' : 'pass',
        detail: proven
          ? `${sr.metric} regression proven: relative Δ ${relCi(rel)} is entirely below −${pct(sr.maxRelative)}`
          : `relative Δ${sr.metric} ${relCi(rel)}: no regression beyond −${pct(sr.maxRelative)} proven`,
      });
    }
  }

  const failed = checks.filter((c) => c.outcome === 'fail');
  return {
    passed: failed.length === 0,
    checks,
    summary:
      failed.length === 0
        ? `all gates passed (${checks.filter((c) => c.outcome === 'pass').length} checked)`
        : `failed ${failed.length} gate(s): ${failed.map((c) => `${c.gate} (${c.detail})`).join('; ')}`,
  };
}
