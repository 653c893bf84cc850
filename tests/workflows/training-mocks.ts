/** Mocked activities of a whole continuousTraining run, shared by the workflow tests that run one. */
import type { MockActivities } from './harness';

export const VERSION = '7';
export const dataset = (reused: boolean) => ({
  name: 'ml-test',
  version: 'd41d8cd98f00',
  uri: 's3://recsys/datasets/ml-test/d41d8cd98f00/',
  manifestUri: 's3://recsys/datasets/ml-test/d41d8cd98f00/manifest.json',
  counts: { interactions: 1000, users: 50, items: 80 },
  reused,
});

/** Every step succeeds; `reused` says whether each cached step found its earlier output. */
export function trainingActivities(
  reused: { data: boolean; model: boolean },
  overrides: MockActivities = {},
): MockActivities {
  const modelReused = reused.model;
  return {
    etl: () => dataset(reused.data),
    validateDataset: () => ({
      status: 'pass',
      summary: 'no anomalies',
      reportUri: 's3://recsys/datasets/ml-test/d41d8cd98f00/validation.json',
      anomalies: [],
      reused: reused.data,
    }),
    train: (i) => ({
      trainingKey: 'k1',
      uri: 's3://recsys/training/k1/',
      modelUri: 's3://recsys/training/k1/model.pt',
      epochs: 2,
      finalLoss: 0.42,
      samplesPerSec: 1000,
      trainSeconds: 3,
      worldSize: 2,
      resumedFromEpoch: 0,
      config: { model: 'two_tower', ...(i.config as object) },
      reused: modelReused,
    }),
    currentChampion: () => null,
    evaluate: () => ({
      model: { 'ndcg@10': 0.12, 'recall@10': 0.2 },
      popularity: { 'ndcg@10': 0.05 },
      nUsers: 50,
      reused: modelReused,
    }),
    exportOnnx: () => ({
      onnxUri: 's3://recsys/training/k1/model.onnx',
      sha256: 'aa',
      topK: 100,
      maxAbsDiff: 1e-6,
      tolerance: 1e-4,
      reused: modelReused,
    }),
    quantize: () => ({
      ships: 'fp32',
      reason: 'int8 is not faster',
      int8Uri: 's3://recsys/training/k1/model.int8.onnx',
      int8Sha256: 'bb',
      float: { ndcgAt10: 0.12, p50Ms: 1, p99Ms: 2 },
      int8: { ndcgAt10: 0.119, p50Ms: 1.1, p99Ms: 2.2 },
      relativeNdcgChange: -0.008,
      tolerance: 0.01,
      reused: modelReused,
    }),
    checkGates: () => ({ passed: true, summary: 'all gates passed', results: [] }),
    register: (i) => ({ model: i.model, version: VERSION, aliases: ['challenger'] }),
    // The rollout a passing model starts (no champion: staging, then it waits for approval).
    describeVersion: (i) => ({ model: i.model, version: i.version, dataset: dataset(true) }),
    ensureEnvironment: (i) => ({ env: i.env, replicas: [] }),
    runLoadTest: () => ({ requests: 100, achievedQps: 50, errorRate: 0, p50Ms: 2, p99Ms: 8 }),
    stopEnvironment: () => ({ stopped: true }),
    tagVersion: () => ({}),
    ...overrides,
  };
}
