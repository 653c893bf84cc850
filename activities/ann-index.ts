/**
 * The export step's HNSW part: when models.export wrote the user graph, item vectors and check queries
 * (models/ann_export.py), build and check the index in a process of its own (activities/ann-build.ts: minutes of
 * synchronous native work, kept off the worker's event loop so heartbeats and cancellation keep working), then store
 * the user graph and the index under their checksums' names beside the exact graph and write the manifest that names
 * them (lib/ann-manifest.ts), itself under its checksum's name. Content-addressed keys make a retried export safe:
 * it rewrites the same objects or writes new ones, never changes one a stored result points at.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { HnswGraphKind, type AnnManifest } from '../lib/ann-manifest';
import { fileDigest } from '../lib/files';
import type { ExportResult } from './contracts';
import type { ActivityDeps } from './deps';
import { REPO_ROOT } from './python-process';
import type { StepContext } from './python-step';

/** models/export.py's `ann` object (its module docstring). */
export const PyAnn = z.object({
  user_graph: z.string(),
  items: z.string(),
  queries: z.string(),
  dims: z.number().int().positive(),
  n_items: z.number().int().positive(),
});
export type PyAnn = z.infer<typeof PyAnn>;

/** The index's check: recall@K_CHECK against exact search at least TARGET (issue 15). */
export const ANN_CHECK = { k: 10, target: 0.99 } as const;

const Attempt = z.object({
  graph: HnswGraphKind,
  buildSeconds: z.number(),
  tried: z.array(z.object({ expansionSearch: z.number().int(), recall: z.number() })),
});
const Common = {
  attempts: z.array(Attempt),
  k: z.number().int().positive(),
  target: z.number(),
  queries: z.number().int().positive(),
  nItems: z.number().int().positive(),
  seconds: z.number(),
};
/** activities/ann-build.ts's result line. */
const BuildResult = z.discriminatedUnion('passed', [
  z.object({
    passed: z.literal(true),
    graph: HnswGraphKind,
    expansionSearch: z.number().int().positive(),
    recall: z.number(),
    params: z.object({
      connectivity: z.number().int(),
      expansionAdd: z.number().int(),
      expansionSearch: z.number().int(),
    }),
    ...Common,
  }),
  z.object({ passed: z.literal(false), reason: z.string(), ...Common }),
]);
const Progress = z.object({
  phase: z.string(),
  graph: HnswGraphKind.optional(),
  expansionSearch: z.number().optional(),
  recall: z.number().optional(),
});

export type AnnOutcome = { attached: NonNullable<ExportResult['ann']> } | { rejected: string };

/** How the builder runs: this Node with tsx's loader (the worker itself runs TypeScript through tsx). */
export function annBuildCommand(args: string[]): { cmd: string; args: string[] } {
  const tsx = pathToFileURL(require.resolve('tsx')).href;
  return {
    cmd: process.execPath,
    args: ['--import', tsx, path.join(REPO_ROOT, 'activities', 'ann-build.ts'), ...args],
  };
}

/** A key beside `exactUri` (the exact graph's) named by the file's checksum. */
const besideByHash = (exactUri: string, stem: string, sha256: string, ext: string) =>
  exactUri.replace(/[^/]*$/, `${stem}-${sha256.slice(0, 16)}${ext}`);

export async function attachAnnIndex(
  ctx: StepContext<{ stage: string }>,
  store: ActivityDeps['store'],
  ann: PyAnn,
  opts: { exactUri: string; historyLen: number },
): Promise<AnnOutcome> {
  const indexFile = path.join(ctx.dir, 'index.usearch');
  ctx.heartbeat({ stage: 'ann-build' });
  const built = await ctx.python({
    module: 'activities/ann-build.ts',
    args: [],
    command: annBuildCommand([
      ...['--items', ann.items, '--queries', ann.queries, '--dims', String(ann.dims)],
      ...['--n-items', String(ann.n_items), '--out', indexFile],
      ...['--k', String(ANN_CHECK.k), '--target', String(ANN_CHECK.target)],
    ]),
    result: BuildResult,
    events: { progress: Progress },
    // The heartbeat says how far the build is (the step re-sends it every few seconds).
    onEvent: (e) => {
      const graph = e.graph ? ` (${e.graph} graph)` : '';
      ctx.heartbeat({
        stage:
          e.phase === 'tune' && e.expansionSearch !== undefined
            ? `ann-tune${graph}: recall@${ANN_CHECK.k} ${e.recall?.toFixed(4)} at expansionSearch ${e.expansionSearch}`
            : `ann-${e.phase}${graph}`,
      });
    },
  });
  if (!built.passed) return { rejected: built.reason };

  ctx.heartbeat({ stage: 'ann-store' });
  const user = await fileDigest(ann.user_graph);
  const index = await fileDigest(indexFile);
  const userUri = besideByHash(opts.exactUri, 'ann-user', user.sha256, '.onnx');
  const indexUri = besideByHash(opts.exactUri, 'ann-hnsw', index.sha256, '.usearch');
  await store.putFile(userUri, ann.user_graph);
  await store.putFile(indexUri, indexFile);
  const manifest: AnnManifest = {
    kind: 'hnsw',
    dims: ann.dims,
    nItems: ann.n_items,
    historyLen: opts.historyLen,
    metric: 'ip',
    graph: built.graph,
    params: built.params,
    check: { k: built.k, target: built.target, recall: built.recall, queries: built.queries },
    user: { uri: userUri, ...user },
    index: { uri: indexUri, ...index },
  };
  const manifestFile = path.join(ctx.dir, 'ann.json');
  await fs.writeFile(manifestFile, JSON.stringify(manifest, null, 2) + '\n');
  const digest = await fileDigest(manifestFile);
  const uri = besideByHash(opts.exactUri, 'ann', digest.sha256, '.json');
  // The manifest last: it only ever names files that are stored.
  await store.putFile(uri, manifestFile);
  return {
    attached: {
      uri,
      sha256: digest.sha256,
      recall: built.recall,
      expansionSearch: built.expansionSearch,
      graph: built.graph,
    },
  };
}
