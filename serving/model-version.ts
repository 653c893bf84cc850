/**
 * From a registry reference to what serving needs to know about a version: its ONNX artefact (URI, checksum, graph
 * shape) and the dataset version it was trained on. All of it comes from the tags of lib/mlflow/tags.ts.
 */
import { ARTIFACT_KINDS, type ArtifactKind } from '../lib/cascade-manifest';
import { checkDatasetName, checkDatasetVersion, parseDatasetUri } from '../lib/dataset/ref';
import { MlflowClient, tagsOf } from '../lib/mlflow/client';
import type { MlflowModelVersion } from '../lib/mlflow/schemas';
import { TAGS } from '../lib/mlflow/tags';
import { ModelLoadError, messageOf } from './errors';
import { formatModelRef, type ModelRef } from './model-ref';

export interface ServableVersion {
  name: string;
  version: string;
  /** Aliases the version had when it was resolved (informational: aliases move). */
  aliases: string[];
  /** What `onnxUri` holds: one retrieval graph, or a cascade manifest naming each stage's graph. */
  kind: ArtifactKind;
  onnxUri: string;
  onnxSha256: string;
  /** K: the graph returns this many items per history. */
  topK: number;
  /** L: the graph takes histories of exactly this length. */
  historyLen: number;
  dataset: { name: string; version: string; uri: string };
  /**
   * The HNSW manifest attached to a single model (tags recsys.ann.uri / recsys.ann.sha256), as tagged: checked when
   * loaded (serving/model-loader.ts), where any problem means serving the exact graph instead, never a failed load.
   */
  ann?: { uri: string; sha256: string };
}

/** Reads and checks the serving tags of a version; the error names the first missing or malformed tag. */
export function servableFromTags(name: string, version: string, tags: Record<string, string>): ServableVersion {
  const ref = `models:/${name}/${version}`;
  const bad = (tag: string, why: string) =>
    new ModelLoadError(ref, 'resolve', `tag ${tag} ${why} (value: ${JSON.stringify(tags[tag] ?? null)})`);
  const text = (tag: string): string => {
    const v = tags[tag];
    if (v === undefined || v === '') throw bad(tag, 'is missing: the version was not registered for serving');
    return v;
  };
  const positive = (tag: string): number => {
    const v = Number(text(tag));
    if (!Number.isInteger(v) || v < 1) throw bad(tag, 'must be a positive integer');
    return v;
  };
  // Dataset names and versions become cache paths and S3 keys: a tag is refused before it can point elsewhere.
  const checked = <T>(tag: string, check: (v: string) => T): T => {
    try {
      return check(text(tag));
    } catch (err) {
      if (err instanceof ModelLoadError) throw err;
      throw bad(tag, `is refused: ${(err as Error).message}`);
    }
  };
  const onnxUri = text(TAGS.onnxUri);
  if (!onnxUri.startsWith('s3://')) throw bad(TAGS.onnxUri, 'must be an s3:// URI');
  const onnxSha256 = text(TAGS.onnxSha256).toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(onnxSha256)) throw bad(TAGS.onnxSha256, 'must be a hex sha256');
  const kind = (tags[TAGS.onnxKind] ?? 'single') as ArtifactKind;
  if (!ARTIFACT_KINDS.includes(kind)) throw bad(TAGS.onnxKind, `must be one of ${ARTIFACT_KINDS.join(', ')}`);
  const datasetName = checked(TAGS.datasetName, checkDatasetName);
  const datasetVersion = checked(TAGS.datasetVersion, checkDatasetVersion);
  const dataset = checked(TAGS.datasetUri, parseDatasetUri);
  if (dataset.name !== datasetName || dataset.version !== datasetVersion)
    throw bad(TAGS.datasetUri, `must be the URI of the tagged dataset ${datasetName}@${datasetVersion}`);
  const annUri = tags[TAGS.annUri];
  return {
    name,
    version,
    aliases: [],
    kind,
    onnxUri,
    onnxSha256,
    topK: positive(TAGS.topK),
    historyLen: positive(TAGS.historyLen),
    dataset: { name: datasetName, version: datasetVersion, uri: dataset.uri },
    ...(annUri && { ann: { uri: annUri, sha256: (tags[TAGS.annSha256] ?? '').toLowerCase() } }),
  };
}

/** Resolves an alias or version in the MLflow registry. */
export async function resolveServable(ref: ModelRef, mlflow = new MlflowClient()): Promise<ServableVersion> {
  const label = formatModelRef(ref);
  let mv: MlflowModelVersion | undefined;
  try {
    mv =
      ref.version !== undefined
        ? await mlflow.getModelVersion(ref.name, ref.version)
        : await mlflow.getVersionByAlias(ref.name, ref.alias);
  } catch (err) {
    throw new ModelLoadError(label, 'resolve', `MLflow registry at ${mlflow.baseUrl}: ${messageOf(err)}`, {
      cause: err,
    });
  }
  if (!mv) throw new ModelLoadError(label, 'resolve', `no such model or alias in the registry at ${mlflow.baseUrl}`);
  return { ...servableFromTags(mv.name, mv.version, tagsOf(mv)), aliases: mv.aliases ?? [] };
}
