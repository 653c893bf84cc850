import { MicroBatcher } from '../../../serving/micro-batcher';
import { batchable } from '../../../serving/onnx-ranker';

/** A runner whose batches finish when the test says so. */
function gatedRunner() {
  const calls: number[][] = [];
  const gates: (() => void)[] = [];
  const run = (reqs: number[]) => {
    calls.push(reqs);
    return new Promise<number[]>((resolve) => gates.push(() => resolve(reqs.map((r) => r * 10))));
  };
  return { calls, run, release: () => gates.shift()!() };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('MicroBatcher', () => {
  it('runs a request at once when idle, and batches the ones that arrive while it is busy', async () => {
    const g = gatedRunner();
    const b = new MicroBatcher(g.run, 3, 1);
    const first = b.submit(1);
    const rest = [2, 3, 4, 5].map((r) => b.submit(r));
    expect(g.calls).toEqual([[1]]); // no waiting for company
    g.release();
    expect(await first).toBe(10);
    await tick();
    expect(g.calls).toEqual([[1], [2, 3, 4]]); // the queue, up to maxBatch
    g.release();
    await tick();
    g.release();
    expect(await Promise.all(rest)).toEqual([20, 30, 40, 50]);
    expect(g.calls).toEqual([[1], [2, 3, 4], [5]]);
    expect({ batches: b.batches, served: b.served }).toEqual({ batches: 3, served: 5 });
  });

  it('runs up to maxInFlight batches at once', () => {
    const g = gatedRunner();
    const b = new MicroBatcher(g.run, 8, 2);
    void b.submit(1);
    void b.submit(2);
    void b.submit(3);
    expect(g.calls).toEqual([[1], [2]]);
  });

  it('fails every request of a failed batch and keeps serving the next', async () => {
    let fail = true;
    const b = new MicroBatcher(async (reqs: number[]) => {
      await tick();
      if (fail) throw new Error('inference failed');
      return reqs;
    });
    const doomed = [b.submit(1), b.submit(2)];
    fail = true;
    await expect(doomed[0]).rejects.toThrow('inference failed');
    fail = false;
    await expect(doomed[1]).resolves.toBe(2); // it was queued behind the failed batch
    await expect(b.submit(3)).resolves.toBe(3);
  });

  it('rejects a runner that returns the wrong number of results', async () => {
    const b = new MicroBatcher(async (reqs: number[]) => Promise.resolve(reqs.slice(1)));
    await expect(b.submit(1)).rejects.toThrow('batch of 1 requests returned 0 results');
  });
});

describe('batchable', () => {
  it('refuses graphs that quantize activations dynamically (one scale per batch)', () => {
    const enc = (s: string) => new TextEncoder().encode(s);
    expect(batchable(enc('\x08\x07graph MatMul TopK'))).toBe(true);
    expect(batchable(enc('\x08\x07graph DynamicQuantizeLinear MatMulInteger TopK'))).toBe(false);
  });
});
