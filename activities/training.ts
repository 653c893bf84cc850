/**
 * Training activity: spawns `torchrun -m models.train`, turns its progress into heartbeats, uploads a checkpoint to
 * the object store after every epoch and, when retried (a worker killed mid-training, a node lost), resumes from the
 * last checkpoint. Outputs are keyed by the content of their inputs, so a finished training is never redone.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { config } from '../lib/config';
import { withTempDir } from '../lib/files';
import { objectStore } from '../lib/object-store';
import type { DatasetVersion } from '../lib/dataset/ref';
import { localDataset } from '../lib/dataset/cache';
import { lastHeartbeatDetails } from './heartbeat';
import { PythonStepError, runPython, type PythonEvent } from './python-process';

export interface TrainInput {
  /** Registered model name, e.g. `two-tower-ml-100k`. */
  model: string;
  dataset: DatasetVersion;
  /** models.train TrainConfig overrides (the family is `config.model`, two_tower by default). */
  config: Record<string, unknown>;
  /** Processes per node for torchrun (DDP); 1 runs a single process without torchrun. */
  nprocPerNode: number;
  /**
   * Set to force a fresh training of inputs that were trained before (e.g. the workflow id of a forced re-run): it
   * becomes part of the training key, so every output downstream (evaluation, export, quantization) is new too.
   */
  rerun?: string;
}

export interface TrainResult {
  trainingKey: string;
  /** s3:// prefix holding checkpoints, model.pt and result.json of this training. */
  uri: string;
  modelUri: string;
  epochs: number;
  finalLoss: number;
  samplesPerSec: number;
  trainSeconds: number;
  worldSize: number;
  resumedFromEpoch: number;
  /** The resolved training config (defaults filled in), as the model was trained. */
  config: Record<string, unknown>;
  /** The same inputs were trained before; their output was reused. */
  reused: boolean;
}

/** What a training attempt reports in its heartbeats; the next attempt resumes from `checkpointUri`. */
export interface TrainHeartbeat {
  stage: 'prepare' | 'train' | 'upload';
  pid?: number;
  epoch?: number;
  step?: number;
  stepsPerEpoch?: number;
  epochs?: number;
  loss?: number;
  samplesPerSec?: number;
  checkpointEpoch?: number;
  checkpointUri?: string;
}

export function trainingKey(input: Pick<TrainInput, 'dataset' | 'config' | 'nprocPerNode' | 'rerun'>): string {
  const canonical = JSON.stringify({
    dataset: `${input.dataset.name}/${input.dataset.version}`,
    config: Object.fromEntries(Object.entries(input.config).sort(([a], [b]) => a.localeCompare(b))),
    nprocPerNode: input.nprocPerNode,
    ...(input.rerun ? { rerun: input.rerun } : {}),
  });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

const trainingPrefix = (model: string, key: string) => `s3://${config().bucket}/training/${model}/${key}/`;

async function latestCheckpoint(prefix: string): Promise<{ epoch: number; uri: string } | undefined> {
  const heartbeat = lastHeartbeatDetails<TrainHeartbeat>();
  if (heartbeat?.checkpointUri && heartbeat.checkpointEpoch) {
    return { epoch: heartbeat.checkpointEpoch, uri: heartbeat.checkpointUri };
  }
  // The last heartbeat may not have reached the server before a crash: the object store is the ground truth.
  let best: { epoch: number; uri: string } | undefined;
  for (const uri of await objectStore().list(`${prefix}checkpoints/`)) {
    const m = /epoch-(\d+)\.pt$/.exec(uri);
    if (m && (!best || Number(m[1]) > best.epoch)) best = { epoch: Number(m[1]), uri };
  }
  return best;
}

export async function train(input: TrainInput): Promise<TrainResult> {
  const ctx = Context.current();
  const store = objectStore();
  const key = trainingKey(input);
  const prefix = trainingPrefix(input.model, key);

  const done = await store.getJson(`${prefix}result.json`);
  if (done !== undefined) return { ...(done as TrainResult), reused: true };

  let beat: TrainHeartbeat = { stage: 'prepare' };
  const heartbeat = (patch: Partial<TrainHeartbeat>) => {
    beat = { ...beat, ...patch };
    ctx.heartbeat(beat);
  };
  // Python may be quiet for a while (loading data, building the model); keep the heartbeat alive meanwhile.
  const ticker = setInterval(() => ctx.heartbeat(beat), 5000);
  try {
    const dataDir = await localDataset(input.dataset.manifestUri);
    const resume = await latestCheckpoint(prefix);
    if (resume) heartbeat({ checkpointEpoch: resume.epoch, checkpointUri: resume.uri });

    return await withTempDir('train', async (work) => {
      const args = ['--data-dir', dataDir, '--out-dir', work, '--config-json', JSON.stringify(input.config)];
      args.push('--supervisor-pid', String(process.pid));
      if (resume) {
        const local = path.join(work, 'resume.pt');
        await store.downloadFile(resume.uri, local);
        args.push('--resume', local);
      }
      const onEvent = async (ev: PythonEvent) => {
        if (ev.event === 'start') heartbeat({ stage: 'train', epochs: ev.epochs as number });
        else if (ev.event === 'progress')
          heartbeat({
            stage: 'train',
            epoch: ev.epoch as number,
            step: ev.step as number,
            stepsPerEpoch: ev.steps_per_epoch as number,
            loss: ev.loss as number,
            samplesPerSec: ev.samples_per_sec as number,
          });
        else if (ev.event === 'checkpoint') {
          const uri = `${prefix}checkpoints/epoch-${String(ev.epoch)}.pt`;
          await store.putFile(uri, ev.path as string);
          heartbeat({ checkpointEpoch: ev.epoch as number, checkpointUri: uri });
        }
      };
      const result = await runPython({
        module: 'models.train',
        args,
        nprocPerNode: input.nprocPerNode > 1 ? input.nprocPerNode : undefined,
        onEvent,
        signal: ctx.cancellationSignal,
        onStart: (pid) => heartbeat({ pid }),
      });

      heartbeat({ stage: 'upload' });
      const modelUri = `${prefix}model.pt`;
      await store.putFile(modelUri, result.model_path as string);
      const out: TrainResult = {
        trainingKey: key,
        uri: prefix,
        modelUri,
        epochs: result.epochs as number,
        finalLoss: result.final_loss as number,
        samplesPerSec: result.samples_per_sec as number,
        trainSeconds: result.train_seconds as number,
        worldSize: result.world_size as number,
        resumedFromEpoch: result.resumed_from_epoch as number,
        config: result.config as Record<string, unknown>,
        reused: false,
      };
      // result.json last: its presence means the training is complete.
      await store.putJson(`${prefix}result.json`, out);
      return out;
    });
  } catch (err) {
    if (ctx.cancellationSignal.aborted) throw new CancelledFailure('training cancelled; torchrun stopped');
    if (err instanceof PythonStepError && ['ConfigError', 'UsageError', 'DataError'].includes(err.errorType))
      throw ApplicationFailure.nonRetryable(err.message, err.errorType);
    throw err;
  } finally {
    clearInterval(ticker);
  }
}

/** Downloads a training's model.pt into a local directory. */
export async function localModel(modelUri: string, dir: string): Promise<string> {
  const file = path.join(dir, 'model.pt');
  await fs.mkdir(dir, { recursive: true });
  await objectStore().downloadFile(modelUri, file);
  return file;
}
