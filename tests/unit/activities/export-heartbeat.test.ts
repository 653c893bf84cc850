/**
 * A slow export heartbeats while models.export works (so its heartbeat timeout means a dead worker, not a large
 * catalogue) and can be cancelled. A fake interpreter stands in for Python and a fake store for S3: what is under test
 * is the activity's lifecycle.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { defaultDeps } from '../../../activities/deps';
import { exportActivities } from '../../../activities/export';
import { loadConfig } from '../../../lib/config';
import type { ObjectStore } from '../../../lib/object-store';

let tmp: string;
let python: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'recsys-export-hb-'));
  python = path.join(tmp, 'python');
  // `-m models.export --model M --out O --top-k K`: works for SLOW seconds, then writes O and its result line.
  fs.writeFileSync(
    python,
    `#!/bin/sh
out=$6
sleep "\${SLOW:-6}"
echo onnx > "$out"
echo '{"event":"result","max_abs_diff":1e-7,"tolerance":1e-4,"top_k":10,"history_len":5,"n_items":3,"opset":17}'
`,
    { mode: 0o755 },
  );
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function fakeStore(): ObjectStore {
  const store = {
    getJson: () => Promise.resolve(undefined),
    putJson: () => Promise.resolve(),
    putFile: () => Promise.resolve(),
    downloadFile: (_uri: string, file: string) => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, 'model');
      return Promise.resolve();
    },
  };
  return store as unknown as ObjectStore;
}

const input = {
  training: { uri: 's3://b/training/m/k/', modelUri: 's3://b/training/m/k/model.pt' } as never,
  topK: 10,
};

function exporter() {
  const { exportOnnx } = exportActivities(defaultDeps({ config: { ...loadConfig(), python }, store: fakeStore() }));
  return exportOnnx;
}

test('heartbeats while models.export runs', async () => {
  const env = new MockActivityEnvironment();
  const beats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => beats.push(d));
  const result = await env.run(exporter(), input);
  expect(result).toMatchObject({ topK: 10, nItems: 3, reused: false });
  expect(beats.length).toBeGreaterThanOrEqual(1);
  expect(beats[0]).toEqual({ stage: 'export' });
}, 20_000);

test('a cancelled export stops at once', async () => {
  const env = new MockActivityEnvironment();
  const started = Date.now();
  const run = env.run(exporter(), input);
  setTimeout(() => env.cancel(), 500);
  await expect(run).rejects.toBeInstanceOf(CancelledFailure);
  expect(Date.now() - started).toBeLessThan(5_000);
}, 20_000);
