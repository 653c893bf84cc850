/**
 * The drift reference of a dataset version: deciles and known users from its statistics.json, parsed once per
 * version in a process, and an error naming the version when it has neither statistics nor a manifest.
 */
import { loadDriftReference } from '../../../../fleet/logs/reference';
import { MemoryStore } from './memory-store';

const stats = (itemCounts: Record<string, number>, userCounts: Record<string, number>) => ({
  statisticsVersion: 1,
  rows: 0,
  users: Object.keys(userCounts).length,
  items: Object.keys(itemCounts).length,
  schema: {},
  timestamp: { min: 0, max: 0 },
  dailyVolume: { firstDay: 0, counts: [] },
  gaps: [],
  itemCounts,
  userCounts,
  userActivity: {},
  ratings: {},
});

test('reads statistics.json once per dataset version', async () => {
  const s = new MemoryStore();
  const uri = 's3://b/datasets/toy/v7/';
  s.put(`${uri}statistics.json`, JSON.stringify(stats({ a: 90, b: 5, c: 5 }, { u1: 1, u2: 2 })));
  const ref = await loadDriftReference(s.asStore(), 's3://b/datasets/toy/v7', '/nonexistent');
  expect(ref.datasetUri).toBe(uri);
  expect(ref.datasetVersion).toBe('v7');
  expect([...ref.itemDeciles]).toEqual([
    ['a', 0],
    ['b', 9],
    ['c', 9],
  ]);
  expect([...ref.knownUsers].sort()).toEqual(['u1', 'u2']);
  expect(ref.catalogueSize).toBe(3);
  expect(await loadDriftReference(s.asStore(), uri, '/nonexistent')).toBe(ref);
  expect(s.reads.get(`${uri}statistics.json`)).toBe(1);
});

test('a version without statistics or manifest is an error naming it; the failure is not cached', async () => {
  const s = new MemoryStore();
  const uri = 's3://b/datasets/toy/missing/';
  await expect(loadDriftReference(s.asStore(), uri, '/nonexistent')).rejects.toThrow(
    `dataset version ${uri} has no manifest at ${uri}manifest.json`,
  );
  s.put(`${uri}statistics.json`, JSON.stringify(stats({ a: 1 }, {})));
  expect((await loadDriftReference(s.asStore(), uri, '/nonexistent')).catalogueSize).toBe(1);
  await expect(loadDriftReference(s.asStore(), 's3://b/not-a-dataset/', '/x')).rejects.toThrow(/dataset URI/);
});
