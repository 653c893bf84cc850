/**
 * Fault injection and feedback attribution with stand-in models (no stack needed): SetFault is refused without
 * --allow-faults, validated, idempotent and reported by GetState; a fault changes only its version's answers and
 * metrics, and expires by itself after its TTL; feedback counts for the version that served the request it names,
 * within bounded memory.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { adminClient, feedback, recommend, recommenderClient } from '../../../serving/client';
import {
  DEFAULT_FAULT_TTL_MS,
  FaultTable,
  MAX_FAULT_TTL_MS,
  faultOf,
  faultTtlOf,
  faultyRanker,
  randomTopK,
  type Fault,
} from '../../../serving/faults';
import { LoadedModel } from '../../../serving/loaded-model';
import { telemetryHooks } from '../../../serving/log-hooks';
import { ServingMetrics } from '../../../serving/metrics';
import type { ModelLoader } from '../../../serving/model-loader';
import { ModelPool } from '../../../serving/model-pool';
import type { ModelRef } from '../../../serving/model-ref';
import type {
  AdminClient,
  RecommendRequest,
  RecommendResponse__Output,
  RecommenderClient,
} from '../../../serving/proto';
import { RecentRequests } from '../../../serving/recent-requests';
import { startServer, type RunningServer } from '../../../serving/server';
import { FakeRanker, fakeCatalog, fakeServable } from './fakes';
import { call, failure } from '../../grpc-calls';

// The admin token of the servers and clients here comes from a stack directory of this file's own.
const stackDir = fs.mkdtempSync(path.join(os.tmpdir(), 'serving-faults-stack-'));
process.env.RECSYS_STACK_DIR = stackDir;
delete process.env.RECSYS_ADMIN_TOKEN;
afterAll(() => fs.rmSync(stackDir, { recursive: true, force: true }));

class FakeLoader implements ModelLoader {
  resolve(ref: ModelRef) {
    return Promise.resolve(fakeServable(ref.name, ref.version ?? '1'));
  }
  load(v: ReturnType<typeof fakeServable>) {
    return Promise.resolve(new LoadedModel(v, new FakeRanker(), fakeCatalog()));
  }
}

const req = (user_id: string): RecommendRequest => ({
  user_id,
  history: [{ item_id: 'f', timestamp_ms: 1 }],
  k: 3,
  exclude_item_ids: [],
});
const users = Array.from({ length: 60 }, (_, i) => `user-${i}`);

describe('faults (pure)', () => {
  test('faultOf validates and names the field', () => {
    expect(faultOf(undefined)).toEqual({ addedLatencyMs: 0, errorRate: 0, randomRecommendations: false });
    expect(faultOf({ error_rate: 1.5 })).toBe('fault.error_rate must be in [0, 1] (value: 1.5)');
    expect(faultOf({ added_latency_ms: -1 })).toMatch(/^fault.added_latency_ms must be an integer in \[0, 60000\]/);
  });

  test('an empty fault clears the version; the table lists faults by version', () => {
    const t = new FaultTable();
    t.set('2', { addedLatencyMs: 5, errorRate: 0, randomRecommendations: false });
    t.set('1', { addedLatencyMs: 0, errorRate: 0.5, randomRecommendations: true });
    expect(Object.keys(t.toJSON())).toEqual(['1', '2']);
    t.set('2', { addedLatencyMs: 0, errorRate: 0, randomRecommendations: false });
    expect(t.get('2')).toBeUndefined();
    expect(t.toJSON()).toEqual({ '1': { added_latency_ms: 0, error_rate: 0.5, random_recommendations: true } });
  });

  test('a fault expires after its TTL (default 10 minutes, at most an hour), and says so once', () => {
    let now = 1_000_000;
    const expired: string[] = [];
    const t = new FaultTable({ now: () => now, onExpired: (v) => expired.push(v) });
    const slow: Fault = { addedLatencyMs: 5, errorRate: 0, randomRecommendations: false };
    t.set('1', slow);
    t.set('2', slow, 2000);
    t.set('3', slow, 10 * 3600_000);
    expect(t.expiries()).toEqual({
      '1': 1_000_000 + DEFAULT_FAULT_TTL_MS,
      '2': 1_002_000,
      '3': 1_000_000 + MAX_FAULT_TTL_MS,
    });
    now += 1999;
    expect(t.get('2')).toEqual(slow);
    now += 1;
    expect(t.get('2')).toBeUndefined();
    expect(Object.keys(t.toJSON())).toEqual(['1', '3']);
    now += DEFAULT_FAULT_TTL_MS;
    expect(t.toJSON()).toEqual({ '3': expect.any(Object) as object });
    now += MAX_FAULT_TTL_MS;
    expect(t.get('3')).toBeUndefined();
    expect(t.expiries()).toEqual({});
    expect(expired).toEqual(['2', '1', '3']);
    // Setting again starts the TTL again.
    t.set('2', slow, 1000);
    expect(t.expiries()).toEqual({ '2': now + 1000 });
  });

  test('the TTL on the wire: 0 is the default, over an hour is refused naming the field', () => {
    expect(faultTtlOf(0)).toBe(600_000);
    expect(faultTtlOf(undefined)).toBe(600_000);
    expect(faultTtlOf(30)).toBe(30_000);
    expect(faultTtlOf(3600)).toBe(3_600_000);
    expect(faultTtlOf(3601)).toBe('ttl_seconds must be an integer in [0, 3600] (0: the default, 600) (value: 3601)');
  });

  test('random rankings are distinct in-catalogue indices; errors follow the rate; latency is added', async () => {
    const top = randomTopK(5, 6);
    const items = [...top.items].map(Number);
    expect(new Set(items).size).toBe(5);
    for (const i of items) expect(i >= 1 && i <= 6).toBe(true);
    let draws = 0;
    const fixed = () => [0.1, 0.9][draws++ % 2]!; // alternately below and above 0.5
    const r = faultyRanker(
      new FakeRanker(),
      { addedLatencyMs: 30, errorRate: 0.5, randomRecommendations: false },
      6,
      fixed,
    );
    const started = performance.now();
    await expect(r.rank([1], 1)).rejects.toThrow('injected fault: error_rate 0.5');
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    expect([...(await r.rank([1], 1)).items]).toEqual([1n, 2n, 3n, 4n, 5n]);
  });

  test('RecentRequests forgets the oldest id when full', () => {
    const recent = new RecentRequests(2);
    recent.remember('a', 'm', '1');
    recent.remember('b', 'm', '2');
    recent.remember('c', 'm', '2');
    expect(recent.size).toBe(2);
    expect(recent.servedBy('a')).toBeUndefined();
    expect(recent.servedBy('b')).toEqual({ model: 'm', version: '2' });
    expect(recent.servedBy('')).toBeUndefined();
  });
});

describe.each([true, false])('SetFault over gRPC (allow faults: %s)', (allowed) => {
  let pool: ModelPool;
  let metrics: ServingMetrics;
  let running: RunningServer;
  let admin: AdminClient;
  let client: RecommenderClient;

  beforeAll(async () => {
    pool = new ModelPool(new FakeLoader());
    metrics = new ServingMetrics();
    running = await startServer({
      slot: pool,
      port: 0,
      admin: true,
      hooks: telemetryHooks({ slot: pool, metrics }),
      faults: allowed ? new FaultTable() : undefined,
    });
    admin = adminClient(running.address);
    client = recommenderClient(running.address);
    await call(admin.LoadVersion.bind(admin), { model: 'm', version: '1' });
    await call(admin.LoadVersion.bind(admin), { model: 'm', version: '2' });
    await call(admin.SetTrafficPolicy.bind(admin), { policy: { weights: { '1': 50, '2': 50 }, salt: 's' } });
  });

  afterAll(async () => {
    admin.close();
    client.close();
    await running.shutdown(1000);
  });

  const setFault = (model_version: string, fault?: object) =>
    call(admin.SetFault.bind(admin), { model_version, fault });

  if (!allowed) {
    test('is refused with FAILED_PRECONDITION', async () => {
      expect(await failure(setFault('2', { error_rate: 1 }))).toMatchObject({
        code: status.FAILED_PRECONDITION,
        details: 'fault injection is off; start the server with --allow-faults to use it',
      });
      expect(await call(admin.GetState.bind(admin), {})).toMatchObject({ faults: {}, faults_allowed: false });
    });
    return;
  }

  test('rejects bad faults naming the field', async () => {
    expect(await failure(setFault('2', { error_rate: 2 }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: 'fault.error_rate must be in [0, 1] (value: 2)',
    });
    expect(await failure(setFault('', { error_rate: 1 }))).toMatchObject({ code: status.INVALID_ARGUMENT });
  });

  test('errors on version 2 only; idempotent; reported in GetState; counted for version 2', async () => {
    const first = await setFault('2', { error_rate: 1 });
    expect(await setFault('2', { error_rate: 1 })).toEqual(first);
    expect(await call(admin.GetState.bind(admin), {})).toMatchObject({
      faults: { '2': { added_latency_ms: 0, error_rate: 1, random_recommendations: false } },
      faults_allowed: true,
    });
    const outcomes = await Promise.all(
      users.map((u) =>
        recommend(client, req(u)).then(
          (r) => r.model_version,
          (e: ServiceError) => e.code,
        ),
      ),
    );
    expect(outcomes.filter((o) => o === '2')).toEqual([]);
    const failed = outcomes.filter((o) => o === status.INTERNAL).length;
    const served = outcomes.filter((o) => o === '1').length;
    expect(failed + served).toBe(users.length);
    expect(failed).toBeGreaterThan(10);
    expect(served).toBeGreaterThan(10);
    const text = await metrics.text();
    expect(text).toContain(
      `recsys_request_errors_total{method="Recommend",model="m",version="2",code="INTERNAL"} ${failed}`,
    );
    expect(text).toContain(`recsys_requests_total{method="Recommend",model="m",version="1"} ${served}`);
    expect(text).not.toContain('version="1",code="INTERNAL"');
  });

  test('random rankings on version 2 only; clearing the fault restores the model', async () => {
    await setFault('2', { random_recommendations: true });
    const byVersion = async () => {
      const res = await Promise.all(users.map((u) => recommend(client, { ...req(u), k: 5 })));
      return { v1: res.filter((r) => r.model_version === '1'), v2: res.filter((r) => r.model_version === '2') };
    };
    const ids = (r: RecommendResponse__Output) => r.items.map((i) => i.item_id).join('');
    const { v1, v2 } = await byVersion();
    // The fake ranks a, b, c, d, e (f, the history, excluded): the model's answer is always "abcde".
    for (const r of v1) expect(ids(r)).toBe('abcde');
    // A random ranking of 5 out of 6 items in the one order "abcde" by chance: 1/720 each; all of them: never.
    expect(v2.filter((r) => ids(r) !== 'abcde').length).toBeGreaterThan(0);
    await setFault('2', {});
    expect(await call(admin.GetState.bind(admin), {})).toMatchObject({ faults: {} });
    for (const r of (await byVersion()).v2) expect(ids(r)).toBe('abcde');
  });

  test('feedback counts for the version that served the request_id; unknown ids separately', async () => {
    const before = await metrics.text();
    const count = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
    const res = await recommend(client, req('user-1'));
    // The policy moves everyone to the other version: the feedback still belongs to the one that answered.
    const other = res.model_version === '1' ? '2' : '1';
    await call(admin.SetTrafficPolicy.bind(admin), { policy: { weights: { [other]: 100 }, salt: '' } });
    const fb = (request_id: string) =>
      feedback(client, {
        request_id,
        user_id: 'user-1',
        item_id: 'a',
        event: 'FEEDBACK_EVENT_CLICK',
        timestamp_ms: 0,
        value: 0,
      });
    await fb(res.request_id);
    await fb('no-such-request');
    const after = await metrics.text();
    const clicks = (v: string) =>
      new RegExp(`recsys_feedback_total\\{model="m",version="${v}",event="click"\\} (\\d+)`);
    expect(count(after, clicks(res.model_version)) - count(before, clicks(res.model_version))).toBe(1);
    expect(count(after, clicks(other)) - count(before, clicks(other))).toBe(0);
    const unknown = /recsys_feedback_unattributed_total\{event="click"\} (\d+)/;
    expect(count(after, unknown) - count(before, unknown)).toBe(1);
    const eligible = (v: string) => new RegExp(`recsys_feedback_eligible_total\\{model="m",version="${v}"\\} (\\d+)`);
    expect(count(after, eligible(res.model_version)) - count(before, eligible(res.model_version))).toBe(1);
  });

  test('a fault set with ttl_seconds stops by itself; GetState says when it expires; over an hour is refused', async () => {
    const set = (ttl_seconds: number) =>
      call(admin.SetFault.bind(admin), { model_version: '1', fault: { error_rate: 1 }, ttl_seconds });
    expect(await failure(set(3601))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: 'ttl_seconds must be an integer in [0, 3600] (0: the default, 600) (value: 3601)',
    });
    // Last in this block: the errors it causes on version 1 would show in the metrics the tests above check.
    await call(admin.SetTrafficPolicy.bind(admin), { policy: { weights: { '1': 100 }, salt: '' } });
    const before = Date.now();
    await set(1);
    const state = await call(admin.GetState.bind(admin), {});
    expect(Object.keys(state.faults)).toEqual(['1']);
    expect(state.fault_expires_at_ms['1']).toBeGreaterThanOrEqual(before + 1000);
    expect(state.fault_expires_at_ms['1']).toBeLessThanOrEqual(Date.now() + 1000);
    const failing = await Promise.all(
      users.map((u) =>
        recommend(client, req(u)).then(
          () => 'ok',
          () => 'failed',
        ),
      ),
    );
    expect(new Set(failing)).toEqual(new Set(['failed']));
    await new Promise((r) => setTimeout(r, 1100));
    const after = await Promise.all(
      users.map((u) =>
        recommend(client, req(u)).then(
          () => 'ok',
          () => 'failed',
        ),
      ),
    );
    expect(new Set(after)).toEqual(new Set(['ok']));
    expect(await call(admin.GetState.bind(admin), {})).toMatchObject({ faults: {}, fault_expires_at_ms: {} });
    // Without a TTL: the default ten minutes.
    await call(admin.SetFault.bind(admin), { model_version: '1', fault: { added_latency_ms: 1 } });
    const expires = (await call(admin.GetState.bind(admin), {})).fault_expires_at_ms['1']!;
    expect(Math.abs(expires - (Date.now() + 600_000))).toBeLessThan(1000);
    await call(admin.SetFault.bind(admin), { model_version: '1', fault: {} });
  });
});
