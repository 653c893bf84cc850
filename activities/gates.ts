/**
 * Gates activity: turns an evaluation (intervals and paired differences, overall and per slice) into the inputs of
 * the pure promotion decision (lib/gates/decide.ts) and applies the caller's gate config. An activity rather than
 * workflow code so the config is validated where errors can name it, and the decision is an event in the history.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { GateConfigError, parseGateConfig, type GateMetric } from '../lib/gates/config';
import { decidePromotion, type Difference, type GateDecision, type GateInputs } from '../lib/gates/decide';
import type { CheckGatesInput, EvaluationResult, MetricDifferences } from './contracts';

const metrics = (d: MetricDifferences | undefined): Partial<Record<GateMetric, Difference>> => d ?? {};

export function gateInputs(evaluation: EvaluationResult, championVersion?: string): GateInputs {
  const vsChampion = evaluation.differences.vsBaseline;
  if (championVersion && (!vsChampion || evaluation.baselineVersion !== championVersion))
    throw ApplicationFailure.nonRetryable(
      `the evaluation compared with ${evaluation.baselineVersion ? `v${evaluation.baselineVersion}` : 'no champion'}, ` +
        `but the champion is v${championVersion}: evaluate against the current champion before gating`,
      'GateInputError',
    );
  return {
    model: evaluation.intervals.model,
    vsPopularity: metrics(evaluation.differences.vsPopularity),
    champion: championVersion ? { version: championVersion, vsChampion: metrics(vsChampion) } : undefined,
    slices: Object.entries(evaluation.slices).map(([name, s]) => ({
      name,
      nUsers: s.nUsers,
      vsPopularity: metrics(s.vsPopularity),
      vsChampion: championVersion ? metrics(s.vsBaseline) : undefined,
    })),
  };
}

function checkGates(input: CheckGatesInput): GateDecision {
  let config;
  try {
    config = parseGateConfig(input.config);
  } catch (err) {
    if (err instanceof GateConfigError) throw ApplicationFailure.nonRetryable(err.message, 'GateConfigError');
    throw err;
  }
  return decidePromotion(gateInputs(input.evaluation, input.championVersion), config);
}

export function gateActivities() {
  return {
    /** The promotion decision for an evaluation under a gate config (validated here, so errors name the field). */
    checkGates: (input: CheckGatesInput): Promise<GateDecision> => Promise.resolve(checkGates(input)),
  };
}
