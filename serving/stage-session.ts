/**
 * A scoring stage of a cascade (rank or re-rank): an ONNX graph that scores a request's candidates given its history,
 * one score per candidate in the candidates' order (models/cascade_export.py). Checked when opened: input and output
 * names, types and the history length; the candidate count is dynamic (it varies per request).
 */
import * as ort from 'onnxruntime-node';
import { ModelLoadError, messageOf } from './errors';

export const STAGE_INPUTS = { history: 'history', candidates: 'candidates', rankScores: 'rank_scores' } as const;
export const STAGE_OUTPUT = 'scores';

/** What the cascade needs of a scoring stage: StageSession below, fakes in unit tests. */
export interface StageScorer {
  score(history: BigInt64Array, candidates: BigInt64Array, rankScores?: Float32Array): Promise<Float32Array>;
  dispose(): Promise<void>;
}

export class StageSession implements StageScorer {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly name: string,
    readonly historyLen: number,
    /** The re-ranker also takes the rank stage's scores of the same candidates. */
    readonly takesRankScores: boolean,
  ) {}

  static async open(model: string, name: 'rank' | 'rerank', file: string, historyLen: number): Promise<StageSession> {
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1 });
    } catch (err) {
      throw new ModelLoadError(
        model,
        'session',
        `${name} stage: onnxruntime cannot open the graph: ${messageOf(err)}`,
        {
          cause: err,
        },
      );
    }
    const rankScores = name === 'rerank';
    const problem = StageSession.signatureProblem(session, historyLen, rankScores);
    if (problem) {
      await session.release();
      throw new ModelLoadError(model, 'signature', `${name} stage: ${problem}`);
    }
    return new StageSession(session, name, historyLen, rankScores);
  }

  private static signatureProblem(session: ort.InferenceSession, L: number, rankScores: boolean): string | undefined {
    const want: [string, string][] = [
      [STAGE_INPUTS.history, 'int64'],
      [STAGE_INPUTS.candidates, 'int64'],
      ...(rankScores ? [[STAGE_INPUTS.rankScores, 'float32'] as [string, string]] : []),
    ];
    const got = session.inputMetadata.map((m) => (m.isTensor ? `'${m.name}' ${m.type}` : `'${m.name}'`)).join(', ');
    if (session.inputNames.length !== want.length)
      return `expected inputs ${want.map(([n, t]) => `'${n}' ${t}`).join(', ')}; the graph takes ${got}`;
    for (const [n, t] of want) {
      const meta = session.inputMetadata.find((m) => m.name === n);
      if (!meta?.isTensor || meta.type !== t || meta.shape.length !== 2)
        return `expected input '${n}' ${t} [batch, ${n === STAGE_INPUTS.history ? L : 'C'}]; the graph takes ${got}`;
      if (n === STAGE_INPUTS.history && typeof meta.shape[1] === 'number' && meta.shape[1] !== L)
        return `input 'history' has length ${meta.shape[1]}, but the cascade's history_len is ${L}`;
    }
    const out = session.outputMetadata.find((m) => m.name === STAGE_OUTPUT);
    if (session.outputNames.length !== 1 || !out?.isTensor || out.type !== 'float32' || out.shape.length !== 2)
      return `expected one output '${STAGE_OUTPUT}' float32 [batch, C]`;
    return undefined;
  }

  /** Scores of `candidates` (1-based item indices) for one encoded history row; same order as the candidates. */
  async score(history: BigInt64Array, candidates: BigInt64Array, rankScores?: Float32Array): Promise<Float32Array> {
    const c = candidates.length;
    const feeds: Record<string, ort.Tensor> = {
      [STAGE_INPUTS.history]: new ort.Tensor('int64', history, [1, this.historyLen]),
      [STAGE_INPUTS.candidates]: new ort.Tensor('int64', candidates, [1, c]),
    };
    if (this.takesRankScores) {
      if (!rankScores || rankScores.length !== c) throw new Error(`${this.name} stage needs ${c} rank scores`);
      feeds[STAGE_INPUTS.rankScores] = new ort.Tensor('float32', rankScores, [1, c]);
    }
    const out = await this.session.run(feeds);
    const scores = out[STAGE_OUTPUT]!.data as Float32Array;
    if (scores.length !== c) throw new Error(`${this.name} stage returned ${scores.length} scores for ${c} candidates`);
    return scores;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
