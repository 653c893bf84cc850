/**
 * Drift detection curve at the summary level: for each retrain signal kind and shift size, how many windows of
 * shifted traffic the default config (k = 3 of m = 4) needs to confirm drift, at 1,000 (minRequests) and 10,000
 * requests per window; and false alarms per 100 windows of unshifted traffic. Window summaries are drawn
 * multinomially from a reference shaped like real traffic (tests/unit/lib/drift/traffic.ts: popularity deciles of a
 * Zipf catalogue, history lengths, CTR 0.12, normal scores), with no log, DuckDB or Temporal in the loop.
 *   npx tsx bench/drift-detection.ts [runs=20]
 */
import { DISTRIBUTION_SIGNALS, parseDriftConfig } from '../lib/drift/config';
import { evaluateWindow, type WindowVerdict } from '../lib/drift/evaluate';
import { jensenShannon, mergeBuckets, quantileGroups } from '../lib/drift/statistics';
import { mergeCounts, type SignalName } from '../lib/drift/summary';
import {
  referenceTraffic,
  sampleWindow,
  seeded,
  SHIFT_KINDS,
  SHIFT_MEANING,
  shifted,
  type Rng,
  type ShiftKind,
  type Traffic,
} from '../tests/unit/lib/drift/traffic';
import { machine } from './common';

const SIZES = [0, 0.02, 0.05, 0.1, 0.2, 0.4];
const REQUESTS = [1_000, 10_000];
/** Windows of shifted traffic watched before giving up on a run. */
const MAX_WINDOWS = 12;
/** Unshifted monitors x windows each, per window size, for the false alarm rate. */
const CALM_MONITORS = 10;
const CALM_WINDOWS = 500;
/** The signals each shift moves (the effect-size table). */
const MOVES: Record<ShiftKind, SignalName[]> = {
  popularity: ['requested-popularity', 'recommended-popularity'],
  'user-mix': ['user-unknown', 'history-length'],
  'new-items': ['feedback-new-items'],
  'ctr-drop': ['ctr'],
  score: ['score-top1', 'score-mean'],
};

const config = parseDriftConfig({});
const base = referenceTraffic();

const baselineOf = (rng: Rng, requests: number) =>
  mergeCounts(Array.from({ length: config.baselineWindows }, () => sampleWindow(rng, base, requests)));

/** Watches windows of `traffic` until drift is confirmed; the 1-based window of confirmation and what confirmed. */
function watch(
  rng: Rng,
  traffic: Traffic,
  requests: number,
  windows: number,
): { at?: number; confirmed: SignalName[]; verdicts: WindowVerdict[] } {
  const reference = baselineOf(rng, requests);
  const history: WindowVerdict[] = [];
  for (let w = 1; w <= windows; w++) {
    const v = evaluateWindow({ reference, current: sampleWindow(rng, traffic, requests), config, history });
    history.push(v);
    if (v.status === 'drift') return { at: w, confirmed: v.confirmed, verdicts: history };
  }
  return { confirmed: [], verdicts: history };
}

function curveCell(kind: ShiftKind, size: number, requests: number, runs: number, signals: Set<SignalName>): string {
  const found: number[] = [];
  for (let run = 0; run < runs; run++) {
    const rng = seeded(1_000_003 * run + 7_919 * requests + Math.round(size * 1000) + SHIFT_KINDS.indexOf(kind));
    const r = watch(rng, shifted(base, kind, size), requests, MAX_WINDOWS);
    if (r.at !== undefined) found.push(r.at);
    for (const s of r.confirmed) signals.add(s);
  }
  if (found.length === 0) return '-';
  const mean = found.reduce((a, b) => a + b, 0) / found.length;
  return found.length === runs ? mean.toFixed(1) : `${mean.toFixed(1)} (${found.length}/${runs})`;
}

function falseAlarms(requests: number): { windows: number; drift: number; warning: number; bySignal: string } {
  let drift = 0;
  let warning = 0;
  const bySignal = new Map<string, number>();
  for (let m = 0; m < CALM_MONITORS; m++) {
    const { verdicts } = watch(seeded(424_242 + 31 * m + requests), base, requests, CALM_WINDOWS);
    for (const v of verdicts) {
      if (v.status === 'drift') drift++;
      if (v.status === 'warning') warning++;
      for (const s of [...v.breached, ...v.alerts]) bySignal.set(s, (bySignal.get(s) ?? 0) + 1);
    }
  }
  const windows = CALM_MONITORS * CALM_WINDOWS;
  const text = [...bySignal].map(([s, c]) => `${s} ${c}`).join(', ') || 'none';
  return { windows, drift, warning, bySignal: text };
}

/** The effect size of a signal between two traffic models' probabilities (no sampling noise), as evaluate measures it. */
function populationEffect(sig: SignalName, a: Traffic, b: Traffic): number {
  const p = a.p[sig];
  const q = b.p[sig];
  if ((DISTRIBUTION_SIGNALS as readonly SignalName[]).includes(sig)) {
    const groups = sig.startsWith('score-') ? quantileGroups(p) : p.map((_, i) => i);
    return jensenShannon(mergeBuckets(p, groups), mergeBuckets(q, groups));
  }
  if (sig === 'ctr') return (p[1]! - q[1]!) / p[1]!;
  return Math.abs(q[1]! - p[1]!);
}

const line = (cells: (string | number)[], widths: number[]) =>
  cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[0]!) : String(c).padStart(widths[i]!))).join('  ');

function main(): void {
  const runs = Number(process.argv[2] ?? 20);
  const started = performance.now();
  const { k, m } = config.persistence;
  console.log(`Drift detection benchmark on ${machine()}`);
  console.log(
    `  default config: k=${k} of m=${m} windows, alpha ${config.alpha} / enabled signals, JS threshold 0.1 + sampling ` +
      `allowance, share change 0.1, CTR relative drop 0.2, minRequests ${config.minRequests}, minFeedback ${config.minFeedback}`,
  );
  console.log(
    `  summaries drawn multinomially (independent draws: real logs are clustered by user, so these are kinder to the ` +
      `tests); baseline = ${config.baselineWindows} windows; 10 history items and 10 recommended items per request, ` +
      `${base.feedbackPerRequest} feedback events per request`,
  );
  console.log('  shift of size s:');
  for (const kind of SHIFT_KINDS) console.log(`    ${kind.padEnd(10)} ${SHIFT_MEANING[kind]}`);
  console.log('');
  console.log('  effect size of the moved signals at each shift size, from the probabilities (no sampling noise)');
  const e = [10, 22, 10, ...SIZES.map(() => 8)];
  console.log(line(['shift', 'signal', 'threshold', ...SIZES.map((s) => `s=${s}`)], e));
  for (const kind of SHIFT_KINDS)
    for (const sig of MOVES[kind]) {
      const c = config.signals[sig];
      const threshold =
        'threshold' in c ? `JS ${c.threshold}` : 'maxChange' in c ? `${c.maxChange}` : `${c.maxRelativeDrop}`;
      const values = SIZES.map((size) => populationEffect(sig, base, shifted(base, kind, size)).toFixed(3));
      console.log(line([kind, sig, threshold, ...values], e));
    }
  console.log('');
  console.log(
    `  windows of shifted traffic until drift is confirmed (mean of ${runs} seeded runs; (c/${runs}): only c runs ` +
      `confirmed within ${MAX_WINDOWS} windows; -: none did)`,
  );
  const w = [10, 8, ...SIZES.map(() => 11), 40];
  console.log(line(['shift', 'requests', ...SIZES.map((s) => `s=${s}`), 'confirmed signals'], w));
  for (const kind of SHIFT_KINDS)
    for (const requests of REQUESTS) {
      const signals = new Set<SignalName>();
      const cells = SIZES.map((size) => curveCell(kind, size, requests, runs, signals));
      console.log(line([kind, requests.toLocaleString('en-US'), ...cells, [...signals].join(', ') || '-'], w));
    }
  console.log('');
  console.log(
    `  no shift: ${CALM_MONITORS} monitors x ${CALM_WINDOWS} windows per size, each monitor with its own baseline`,
  );
  const f = [8, 8, 16, 16, 0];
  console.log(line(['requests', 'windows', 'drift / 100 w', 'warning / 100 w', 'breaches by signal'], f));
  for (const requests of REQUESTS) {
    const r = falseAlarms(requests);
    console.log(
      line(
        [
          requests.toLocaleString('en-US'),
          r.windows,
          ((100 * r.drift) / r.windows).toFixed(2),
          ((100 * r.warning) / r.windows).toFixed(2),
          `  ${r.bySignal}`,
        ],
        f,
      ),
    );
  }
  console.log('');
  console.log(`  ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

main();
