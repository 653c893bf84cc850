/**
 * Long steps heartbeat while they work (issue 11, item 4): the ETL's downloads and uploads and data validation's
 * statistics. The object store is an in-memory fake whose transfers take seconds, and statistics are slowed by a
 * wrapper: both are our own collaborators. Heartbeats are counted only while the slow work is in progress, so one
 * sent just before or after a step does not count.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { EtlInput, ValidateDatasetInput, ValidationResult } from '../../../activities/contracts';
import { dataValidationActivities } from '../../../activities/data-validation';
import type { ActivityDeps } from '../../../activities/deps';
import { etlActivities } from '../../../activities/etl';
import { loadConfig } from '../../../lib/config';
import type { DatasetVersion } from '../../../lib/dataset/ref';
import type * as Statistics from '../../../lib/dataset/statistics';
import type { ObjectStore } from '../../../lib/object-store';
import { writeSyntheticLog } from '../../data/synthetic';

const SLOW_MS = 2_600; // longer than heartbeating()'s 2 s interval

/** Statistics take SLOW_MS when `slowStatistics.on`; `running` tells the test when they are being computed. */
const slowStatistics = { on: false, running: false };
jest.mock('../../../lib/dataset/statistics', () => {
  const actual = jest.requireActual<typeof Statistics>('../../../lib/dataset/statistics');
  return {
    ...actual,
    computeStatistics: async (...args: Parameters<typeof actual.computeStatistics>) => {
      if (!slowStatistics.on) return actual.computeStatistics(...args);
      slowStatistics.running = true;
      try {
        await new Promise((r) => setTimeout(r, SLOW_MS));
        return await actual.computeStatistics(...args);
      } finally {
        slowStatistics.running = false;
      }
    },
  };
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Objects in memory; the transfers whose URI matches `slow` take SLOW_MS, and `busy` names the one in progress. */
class SlowStore {
  readonly objects = new Map<string, Buffer>();
  slow: RegExp | undefined;
  busy: string | undefined;
  private async transfer(uri: string, work: (at: number) => Promise<void>): Promise<void> {
    if (!this.slow?.test(uri)) return work(1);
    this.slow = undefined; // only the first matching transfer is slow: one is enough to show the heartbeat
    this.busy = uri;
    try {
      for (let i = 1; i <= 13; i++) {
        await sleep(SLOW_MS / 13);
        await work(i / 13);
      }
    } finally {
      this.busy = undefined;
    }
  }
  exists(uri: string) {
    return Promise.resolve(this.objects.has(uri));
  }
  getJson(uri: string) {
    const b = this.objects.get(uri);
    return Promise.resolve(b === undefined ? undefined : (JSON.parse(b.toString('utf8')) as unknown));
  }
  getBytes(uri: string) {
    return Promise.resolve(this.objects.get(uri));
  }
  putJson(uri: string, value: unknown) {
    this.objects.set(uri, Buffer.from(JSON.stringify(value)));
    return Promise.resolve();
  }
  putBytes(uri: string, body: Uint8Array | string) {
    this.objects.set(uri, Buffer.from(body));
    return Promise.resolve();
  }
  async putFile(uri: string, file: string) {
    const bytes = await fs.readFile(file);
    await this.transfer(uri, (done) => {
      if (done === 1) this.objects.set(uri, bytes);
      return Promise.resolve();
    });
  }
  async downloadFile(uri: string, file: string, onBytes?: (n: number) => void) {
    const bytes = this.objects.get(uri);
    if (bytes === undefined) throw new Error(`no object ${uri}`);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, '');
    let written = 0;
    await this.transfer(uri, async (done) => {
      const upTo = Math.round(bytes.length * done);
      await fs.appendFile(file, bytes.subarray(written, upTo));
      written = upTo;
      onBytes?.(written);
    });
  }
  list(prefix: string) {
    return Promise.resolve([...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort());
  }
  delete(uri: string) {
    this.objects.delete(uri);
    return Promise.resolve();
  }
}

let dir: string;
let store: SlowStore;
let deps: ActivityDeps;
let built: DatasetVersion;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-etl-hb-'));
  store = new SlowStore();
  deps = {
    config: { ...loadConfig(), bucket: 'recsys', cacheDir: path.join(dir, 'cache') },
    store: store as unknown as ObjectStore,
    mlflow: undefined as unknown as ActivityDeps['mlflow'],
  };
  const csv = path.join(dir, 'logs.csv');
  await writeSyntheticLog(csv, { users: 60, items: 40, interactions: 1500, minPerUser: 20, seed: 4 });
  store.objects.set('s3://recsys/raw/hb/logs.csv', await fs.readFile(csv));
});
afterAll(() => fs.rm(dir, { recursive: true, force: true }));

test('the ETL heartbeats during a long download, with the bytes so far', async () => {
  const env = new MockActivityEnvironment();
  const during: { busy: string; detail: Record<string, unknown> }[] = [];
  env.on('heartbeat', (detail: Record<string, unknown>) => {
    if (store.busy) during.push({ busy: store.busy, detail });
  });
  store.slow = /raw\/hb\/logs\.csv$/;
  const { etl } = etlActivities(deps);
  const input: EtlInput = { name: 'hb', sources: ['s3://recsys/raw/hb/logs.csv'], config: { format: 'csv' } };
  built = await env.run<[EtlInput], DatasetVersion, typeof etl>(etl, input);
  // The download was slow: a heartbeat came while it ran, after some bytes had arrived.
  expect(during).toEqual(
    expect.arrayContaining([
      {
        busy: 's3://recsys/raw/hb/logs.csv',
        detail: expect.objectContaining({
          step: 'download',
          uri: 's3://recsys/raw/hb/logs.csv',
          bytes: expect.any(Number),
        }),
      },
    ]),
  );
  expect(Math.max(...during.map((d) => Number(d.detail.bytes ?? 0)))).toBeGreaterThan(0);
}, 30_000);

test('the ETL heartbeats during a long upload', async () => {
  // A new config gives a new version, so the ETL writes (and uploads) again; the first upload is slow.
  store.slow = /\.parquet$/;
  const env = new MockActivityEnvironment();
  const during: Record<string, unknown>[] = [];
  env.on('heartbeat', (detail: Record<string, unknown>) => {
    if (store.busy?.endsWith('.parquet')) during.push(detail);
  });
  const { etl } = etlActivities(deps);
  const input: EtlInput = {
    name: 'hb',
    sources: ['s3://recsys/raw/hb/logs.csv'],
    config: { format: 'csv', maxReportedProblems: 21 },
  };
  await env.run<[EtlInput], DatasetVersion, typeof etl>(etl, input);
  expect(during).toEqual(expect.arrayContaining([expect.objectContaining({ step: 'upload' })]));
}, 30_000);

test('data validation heartbeats while it computes the statistics of a version', async () => {
  slowStatistics.on = true;
  try {
    const env = new MockActivityEnvironment();
    const during: Record<string, unknown>[] = [];
    env.on('heartbeat', (detail: Record<string, unknown>) => {
      if (slowStatistics.running) during.push(detail);
    });
    const { validateDataset } = dataValidationActivities(deps);
    const result = await env.run<[ValidateDatasetInput], ValidationResult, typeof validateDataset>(validateDataset, {
      dataset: built,
    });
    expect(result.reused).toBe(false);
    expect(during).toEqual(
      expect.arrayContaining([expect.objectContaining({ step: 'statistics', version: built.version })]),
    );
  } finally {
    slowStatistics.on = false;
  }
}, 30_000);
