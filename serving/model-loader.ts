/**
 * Loads a registry version into a LoadedModel, checking at each step, in order: resolve the alias or version and its
 * tags (MLflow), download the ONNX graph and verify its sha256 against the tag, open it and check its signature,
 * load the item catalogue of its dataset version, and run warm-up inferences. Nothing is swapped in here: the caller
 * (ModelPool) does that only once this has returned. A version with an HNSW index (lib/ann-manifest.ts) goes through
 * the same steps for the index's files first, and falls back to the exact graph when any of them fails.
 */
import { localDataset } from '../lib/dataset/cache';
import { config } from '../lib/config';
import { MlflowClient } from '../lib/mlflow/client';
import { manifestUri } from '../lib/dataset/ref';
import { objectStore, type ObjectStore } from '../lib/object-store';
import { readFile } from 'node:fs/promises';
import { parseCascadeManifest, stageOf, type CascadeManifest } from '../lib/cascade-manifest';
import { parseAnnManifest, type AnnManifest } from '../lib/ann-manifest';
import { TAGS } from '../lib/mlflow/tags';
import { AnnRanker } from './ann-ranker';
import { fetchVerifiedOnnx } from './artifact';
import { CascadeRanker, type RouteDecider } from './cascade-ranker';
import type { Catalog } from './catalog';
import { loadCatalog } from './catalog-loader';
import { ModelLoadError, messageOf } from './errors';
import { LoadedModel } from './loaded-model';
import type { ModelRef } from './model-ref';
import { resolveServable, type ServableVersion } from './model-version';
import { OnnxRanker, type Ranker } from './onnx-ranker';
import { retrievalModeFromEnv, type RetrievalMode } from './retrieval-mode';
import { defaultRouter } from './router-factory';
import { StageSession } from './stage-session';
import type { RequestLimits } from './validate';

export interface LoaderDeps {
  mlflow: MlflowClient;
  store: ObjectStore;
  /** Where verified ONNX files are cached, by checksum. */
  cacheDir: string;
  limits: Partial<Omit<RequestLimits, 'topK'>>;
  /** A fresh router (and its budget) for each cascade version loaded; serving/router-factory.ts by default. */
  router?: () => RouteDecider;
  /** `exact` ignores the versions' HNSW indexes; `auto` (the default) uses one when it verifies. */
  retrieval?: RetrievalMode;
  /** Where a version's index that cannot serve is reported (the exact graph serves instead); stderr by default. */
  log?: (message: string) => void;
}

export function defaultLoaderDeps(): LoaderDeps {
  return {
    mlflow: new MlflowClient(),
    store: objectStore(),
    cacheDir: config().cacheDir,
    limits: {},
    retrieval: retrievalModeFromEnv(),
  };
}

async function catalogOf(model: string, v: ServableVersion, deps: LoaderDeps): Promise<Catalog> {
  try {
    const dir = await localDataset(manifestUri(v.dataset.uri), deps.store, deps.cacheDir);
    return await loadCatalog(dir, v.historyLen);
  } catch (err) {
    throw new ModelLoadError(model, 'catalog', `dataset ${v.dataset.uri}: ${messageOf(err)}`, { cause: err });
  }
}

/**
 * Loads and checks a resolved version. `signal` (the pool's deadline) stops the download at once and the other steps
 * at their next boundary, releasing what was opened. A single model with an HNSW index (and $RECSYS_RETRIEVAL not
 * `exact`) is served through the index; when anything about the index fails, that is logged and the exact graph
 * serves instead: an index is an optimisation, never a reason not to serve.
 */
export async function loadServable(
  version: ServableVersion,
  deps: LoaderDeps,
  signal?: AbortSignal,
): Promise<LoadedModel> {
  const label = `models:/${version.name}/${version.version}`;
  if (version.kind === 'single' && version.ann && (deps.retrieval ?? 'auto') !== 'exact') {
    try {
      return await ready(label, version, deps, await openAnn(label, version, version.ann, deps, signal), signal);
    } catch (err) {
      if (signal?.aborted) throw err;
      (deps.log ?? console.error)(
        `${label}: not serving its HNSW index ${version.ann.uri} (${messageOf(err)}); serving the exact top-K graph`,
      );
    }
  }
  const ranker =
    version.kind === 'cascade'
      ? await openCascade(label, version, deps, signal)
      : await openSingle(label, version, deps, signal);
  return ready(label, version, deps, ranker, signal);
}

/** The version's catalogue and the ranker's warm-up, then the LoadedModel; the ranker is released if either fails. */
async function ready(
  label: string,
  version: ServableVersion,
  deps: LoaderDeps,
  ranker: Ranker & { warmUp(model: string, catalog: Catalog): Promise<void> },
  signal?: AbortSignal,
): Promise<LoadedModel> {
  try {
    signal?.throwIfAborted();
    const catalog = await catalogOf(label, version, deps);
    signal?.throwIfAborted();
    await ranker.warmUp(label, catalog);
    return new LoadedModel(version, ranker, catalog, deps.limits);
  } catch (err) {
    await ranker.dispose().catch(() => undefined);
    throw err;
  }
}

/** The HNSW manifest (verified against the ann tag's checksum), then the user graph and the index (against its). */
async function openAnn(
  label: string,
  version: ServableVersion,
  ann: { uri: string; sha256: string },
  deps: LoaderDeps,
  signal?: AbortSignal,
): Promise<AnnRanker> {
  if (!ann.uri.startsWith('s3://') || !/^[0-9a-f]{64}$/.test(ann.sha256))
    throw new ModelLoadError(
      label,
      'resolve',
      `tags ${TAGS.annUri} / ${TAGS.annSha256} must be an s3:// URI and a hex sha256 ` +
        `(values: ${JSON.stringify(ann.uri)}, ${JSON.stringify(ann.sha256)})`,
    );
  const opts = { ...deps, signal };
  const manifestFile = await fetchVerifiedOnnx(`${label} (HNSW manifest)`, ann.uri, ann.sha256, opts, '.json');
  let manifest: AnnManifest;
  try {
    manifest = parseAnnManifest(await readFile(manifestFile, 'utf8'), ann.uri);
  } catch (err) {
    throw new ModelLoadError(label, 'signature', `HNSW manifest: ${messageOf(err)}`, { cause: err });
  }
  const [user, index] = await Promise.all([
    fetchVerifiedOnnx(`${label} (user graph)`, manifest.user.uri, manifest.user.sha256, opts),
    fetchVerifiedOnnx(`${label} (HNSW index)`, manifest.index.uri, manifest.index.sha256, opts, '.usearch'),
  ]);
  signal?.throwIfAborted();
  return AnnRanker.open(label, { user, index }, manifest, version);
}

async function openSingle(
  label: string,
  version: ServableVersion,
  deps: LoaderDeps,
  signal?: AbortSignal,
): Promise<OnnxRanker> {
  const file = await fetchVerifiedOnnx(label, version.onnxUri, version.onnxSha256, { ...deps, signal });
  signal?.throwIfAborted();
  return OnnxRanker.open(label, file, version);
}

/** The manifest (verified against the version's checksum), then each stage's graph (against the manifest's). */
async function openCascade(
  label: string,
  version: ServableVersion,
  deps: LoaderDeps,
  signal?: AbortSignal,
): Promise<CascadeRanker> {
  const manifestFile = await fetchVerifiedOnnx(
    label,
    version.onnxUri,
    version.onnxSha256,
    { ...deps, signal },
    '.json',
  );
  let manifest: CascadeManifest;
  try {
    manifest = parseCascadeManifest(await readFile(manifestFile, 'utf8'), version.onnxUri);
  } catch (err) {
    throw new ModelLoadError(label, 'signature', `cascade manifest: ${messageOf(err)}`, { cause: err });
  }
  if (manifest.historyLen !== version.historyLen || stageOf(manifest, 'rerank').topK !== version.topK)
    throw new ModelLoadError(
      label,
      'signature',
      `cascade manifest says history_len ${manifest.historyLen} and top_k ${stageOf(manifest, 'rerank').topK}, ` +
        `the tags say ${version.historyLen} and ${version.topK}`,
    );
  const files = await Promise.all(
    manifest.stages.map((s) => fetchVerifiedOnnx(`${label} (${s.name} stage)`, s.uri, s.sha256, { ...deps, signal })),
  );
  signal?.throwIfAborted();
  const opened: { dispose(): Promise<void> }[] = [];
  try {
    const recall = await OnnxRanker.open(`${label} (recall stage)`, files[0]!, {
      historyLen: manifest.historyLen,
      topK: stageOf(manifest, 'recall').topK,
    });
    opened.push(recall);
    const rank = await StageSession.open(label, 'rank', files[1]!, manifest.historyLen);
    opened.push(rank);
    const rerank = await StageSession.open(label, 'rerank', files[2]!, manifest.historyLen);
    opened.push(rerank);
    return new CascadeRanker(recall, rank, rerank, manifest, (deps.router ?? defaultRouter)());
  } catch (err) {
    await Promise.allSettled(opened.map((o) => o.dispose()));
    throw err;
  }
}

/**
 * How a ModelPool finds and loads versions; the registry-backed one below, or a stand-in in tests. `signal` is aborted
 * when the pool gives up on the load (its deadline, or close()); a loader should stop then, but the pool does not
 * wait for it to.
 */
export interface ModelLoader {
  resolve(ref: ModelRef, signal?: AbortSignal): Promise<ServableVersion>;
  load(version: ServableVersion, signal?: AbortSignal): Promise<LoadedModel>;
}

export function registryLoader(deps: LoaderDeps = defaultLoaderDeps()): ModelLoader {
  return {
    // The MLflow client takes no signal; the pool's deadline bounds the call all the same.
    resolve: (ref) => resolveServable(ref, deps.mlflow),
    load: (version, signal) => loadServable(version, deps, signal),
  };
}
