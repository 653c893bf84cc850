/**
 * What the simulator talks to and replays: the addresses of an environment or one server, the dataset version to
 * replay (given, or the one the served model was trained on, from Admin.GetState), and fault specs from the command
 * line (`latency=200ms`, `errors=0.2`, `random`, comma-separated, or `none`).
 */
import { config } from '../../lib/config';
import { datasetUri, manifestUri, parseDatasetUri, type DatasetVersion } from '../../lib/dataset/ref';
import type { FaultMessage } from '../../serving/faults';
import { serverState } from '../admin';

/** The dataset version to replay: what the local dataset cache needs. */
export type DatasetTarget = Pick<DatasetVersion, 'name' | 'version' | 'manifestUri'>;

/** `--dataset-uri s3://<bucket>/datasets/<name>/<version>/` (trailing slash optional) -> the dataset version. */
export function datasetFromUri(uri: string): DatasetTarget {
  let ref;
  try {
    ref = parseDatasetUri(uri);
  } catch (err) {
    throw new Error(`--dataset-uri must look like s3://<bucket>/datasets/<name>/<version>/, got ${uri}`, {
      cause: err,
    });
  }
  return { name: ref.name, version: ref.version, manifestUri: manifestUri(ref.uri) };
}

/** The fault of a spec; throws naming the bad part. `none` (or '') is the empty fault that clears. */
export function parseFaultSpec(spec: string): FaultMessage {
  const fault: FaultMessage = { added_latency_ms: 0, error_rate: 0, random_recommendations: false };
  for (const part of spec.split(',').map((s) => s.trim())) {
    if (part === '' || part === 'none') continue;
    if (part === 'random') {
      fault.random_recommendations = true;
      continue;
    }
    const lat = /^latency=(\d+)(ms|s)?$/.exec(part);
    if (lat) {
      fault.added_latency_ms = Number(lat[1]) * (lat[2] === 's' ? 1000 : 1);
      continue;
    }
    const err = /^errors=([0-9.]+)$/.exec(part);
    if (err && Number(err[1]) >= 0 && Number(err[1]) <= 1) {
      fault.error_rate = Number(err[1]);
      continue;
    }
    throw new Error(
      `--fault: cannot read ${JSON.stringify(part)}; use latency=200ms, errors=0.2 (0..1), random or none, comma-separated`,
    );
  }
  return fault;
}

/**
 * The dataset version of the model the server at `address` serves (its version with the largest share of traffic),
 * checking that it is `model` when one is given.
 */
export async function servedDataset(address: string, model?: string): Promise<DatasetTarget & { model: string }> {
  const state = await serverState(address, 10_000);
  const primary = [...state.versions].sort((a, b) => b.weight - a.weight)[0];
  if (!primary) throw new Error(`the server at ${address} holds no model version`);
  if (model !== undefined && primary.model_name !== model)
    throw new Error(`the server at ${address} serves ${primary.model_name}, not --model ${model}`);
  return {
    model: primary.model_name,
    name: primary.dataset_name,
    version: primary.dataset_version,
    manifestUri: manifestUri(datasetUri(config().bucket, primary.dataset_name, primary.dataset_version)),
  };
}
