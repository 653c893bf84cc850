/** Stand-ins for the unit tests of the serving tier: a tiny catalogue, a scripted ranker, a servable version. */
import { Catalog, UserHistories } from '../../../serving/catalog';
import type { ServableVersion } from '../../../serving/model-version';
import type { HistoryTime, Ranker, TopK } from '../../../serving/onnx-ranker';

/** Items a..f are indices 1..6; user u1 has the history a, b in the dataset. */
export const fakeCatalog = () =>
  new Catalog(
    ['', 'a', 'b', 'c', 'd', 'e', 'f'],
    Int32Array.of(6, 5, 4, 3, 2, 1),
    Float32Array.of(0.3, 0.25, 0.2, 0.1, 0.1, 0.05),
    new UserHistories(new Map([['u1', 0]]), Int32Array.of(0, 2), Int32Array.of(1, 2)),
  );

/** Always ranks a, b, c, d, e (scores 5..1), after an optional delay; records its inputs; can be told to throw. */
export class FakeRanker implements Ranker {
  readonly historyLen = 3;
  readonly topK = 5;
  fail = false;
  delayMs = 0;
  disposed = false;
  calls: number[][] = [];
  /** The item times (epoch ms) each call was given, undefined when the history had none. */
  times: (number[] | undefined)[] = [];

  async rank(indices: ArrayLike<number>, n: number, time?: HistoryTime): Promise<TopK> {
    this.calls.push(Array.from(indices).slice(0, n));
    this.times.push(time?.times && Array.from(time.times).slice(0, n));
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.fail) throw new Error('boom: graph exploded');
    if (this.disposed) throw new Error('ranked after dispose: the graph was freed while a request still used it');
    return { scores: Float32Array.of(5, 4, 3, 2, 1), items: BigInt64Array.of(1n, 2n, 3n, 4n, 5n) };
  }

  dispose(): Promise<void> {
    this.disposed = true;
    return Promise.resolve();
  }
}

export const fakeServable = (name: string, version: string, aliases: string[] = []): ServableVersion => ({
  name,
  version,
  aliases,
  kind: 'single',
  onnxUri: 's3://x/model.onnx',
  onnxSha256: '0'.repeat(64),
  topK: 5,
  historyLen: 3,
  dataset: { name: 'fake-data', version: `data-${version}`, uri: 's3://x/data/' },
});
