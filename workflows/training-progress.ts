/**
 * The steps of a training run as they go: the `progress` query's state, each step's status, time and one-line
 * summary, and the same as a Markdown table in the workflow's current details (the Web UI's workflow page).
 */
import { log, setCurrentDetails, setHandler } from '@temporalio/workflow';
import { progressQuery, STEPS, type StepName, type StepState, type TrainingProgress } from './training-api';

export class TrainingSteps {
  readonly progress: TrainingProgress = {
    currentStep: STEPS[0],
    steps: STEPS.map((name) => ({ name, status: 'pending' })),
  };
  readonly seconds: Partial<Record<StepName, number>> = {};

  constructor() {
    setHandler(progressQuery, () => this.progress);
  }

  /** Runs a step: `reused` when its result says so, `failed` (and rethrown) when it throws. */
  async run<T extends object>(name: StepName, work: () => Promise<T>, describe: (r: T) => string): Promise<T> {
    const state = this.step(name);
    this.progress.currentStep = name;
    state.status = 'running';
    state.startedAt = new Date().toISOString();
    this.show();
    const started = Date.now();
    try {
      const result = await work();
      state.seconds = (Date.now() - started) / 1000;
      this.seconds[name] = state.seconds;
      state.status = 'reused' in result && result.reused === true ? 'reused' : 'done';
      state.summary = describe(result);
      log.info(`step ${name} ${state.status}`, { summary: state.summary, seconds: state.seconds });
      this.show();
      return result;
    } catch (err) {
      this.fail(name);
      throw err;
    }
  }

  /** Marks a step failed and the run with it. */
  fail(name: StepName): void {
    this.step(name).status = 'failed';
    this.progress.currentStep = 'failed';
    this.show();
  }

  skip(name: StepName, summary: string): void {
    const state = this.step(name);
    state.status = 'skipped';
    state.summary = summary;
  }

  step(name: StepName): StepState {
    return this.progress.steps.find((s) => s.name === name)!;
  }

  /** The steps as a Markdown table in the workflow's current details. */
  show(): void {
    const p = this.progress;
    const head =
      p.currentStep === 'done'
        ? `**${p.outcome ?? 'done'}**` + (p.modelVersion ? ` (v${p.modelVersion})` : '')
        : `**${p.currentStep}**`;
    const rows = p.steps.map(
      (s) =>
        `| ${s.name} | ${ICON[s.status]} | ${s.seconds === undefined ? '' : s.seconds.toFixed(1)} | ${(s.summary ?? '').replace(/\|/g, '/')} |`,
    );
    setCurrentDetails([head, '', '| step | status | s | summary |', '|---|---|---|---|', ...rows].join('\n'));
  }
}

const ICON: Record<StepState['status'], string> = {
  pending: '·',
  running: '▶',
  done: '✓',
  reused: '↺ reused',
  failed: '✗',
  skipped: '–',
};
