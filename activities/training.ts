/**
 * Training activity: spawns `torchrun -m models.train`, turns its progress into heartbeats, uploads a checkpoint to
 * the object store after every epoch and, when retried (a worker killed mid-training, a node lost), resumes from the
 * last checkpoint. Outputs are keyed by the content of their inputs, so a finished training is never redone.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { z } from 'zod';
import { checkModelName, ModelNameError } from '../lib/model-name';
import { localDataset } from '../lib/dataset/cache';
import type { ObjectStore } from '../lib/object-store';
import { TrainResult, type TrainHeartbeat, type TrainInput } from './contracts';
import type { ActivityDeps } from './deps';
import { lastHeartbeatDetails } from './heartbeat';
import { runPythonStep } from './python-step';

// cli/commands/train.ts reads training heartbeats with this type and still imports it from here.

// What models/train.py prints (its module docstring); only the fields used here.
const PyEvents = {
  start: z.object({ epochs: z.number().int() }),
  progress: z.object({
    epoch: z.number().int(),
    step: z.number().int(),
    steps_per_epoch: z.number().int(),
    loss: z.number(),
    samples_per_sec: z.number(),
  }),
  checkpoint: z.object({ epoch: z.number().int(), path: z.string() }),
};
const PyResult = z.object({
  model_path: z.string(),
  epochs: z.number().int(),
  final_loss: z.number(),
  samples_per_sec: z.number(),
  train_seconds: z.number(),
  world_size: z.number().int(),
  resumed_from_epoch: z.number().int(),
  config: z.record(z.string(), z.unknown()),
});

export function trainingKey(input: Pick<TrainInput, 'dataset' | 'config' | 'nprocPerNode' | 'rerun'>): string {
  const canonical = JSON.stringify({
    dataset: `${input.dataset.name}/${input.dataset.version}`,
    config: Object.fromEntries(Object.entries(input.config).sort(([a], [b]) => a.localeCompare(b))),
    nprocPerNode: input.nprocPerNode,
    ...(input.rerun ? { rerun: input.rerun } : {}),
  });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

async function latestCheckpoint(
  store: ObjectStore,
  prefix: string,
): Promise<{ epoch: number; uri: string } | undefined> {
  const heartbeat = lastHeartbeatDetails<TrainHeartbeat>();
  if (heartbeat?.checkpointUri && heartbeat.checkpointEpoch) {
    return { epoch: heartbeat.checkpointEpoch, uri: heartbeat.checkpointUri };
  }
  // The last heartbeat may not have reached the server before a crash: the object store is the ground truth.
  let best: { epoch: number; uri: string } | undefined;
  for (const uri of await store.list(`${prefix}checkpoints/`)) {
    const m = /epoch-(\d+)\.pt$/.exec(uri);
    if (m && (!best || Number(m[1]) > best.epoch)) best = { epoch: Number(m[1]), uri };
  }
  return best;
}

/** The model name as a key segment, checked: a bad one is a non-retryable ConfigError naming it. */
function modelSegment(model: string): string {
  try {
    return checkModelName(model);
  } catch (err) {
    if (err instanceof ModelNameError) throw ApplicationFailure.nonRetryable(err.message, 'ConfigError');
    throw err;
  }
}

export function trainingActivities(deps: ActivityDeps) {
  const { store } = deps;
  // Arrow functions, not methods: the worker and tests call activities detached from this object.
  return {
    train: async (input: TrainInput): Promise<TrainResult> => {
      const key = trainingKey(input);
      const prefix = `s3://${deps.config.bucket}/training/${modelSegment(input.model)}/${key}/`;
      return runPythonStep<TrainResult, TrainHeartbeat>(deps, {
        name: 'training',
        summaryUri: `${prefix}result.json`,
        summary: TrainResult,
        nonRetryable: ['ConfigError', 'UsageError', 'DataError'],
        heartbeat: { stage: 'prepare' },
        work: async (ctx) => {
          const dataDir = await localDataset(input.dataset.manifestUri, store, deps.config.cacheDir);
          const resume = await latestCheckpoint(store, prefix);
          if (resume) ctx.heartbeat({ checkpointEpoch: resume.epoch, checkpointUri: resume.uri });

          const args = ['--data-dir', dataDir, '--out-dir', ctx.dir, '--config-json', JSON.stringify(input.config)];
          args.push('--supervisor-pid', String(process.pid));
          if (resume) {
            const local = path.join(ctx.dir, 'resume.pt');
            await store.downloadFile(resume.uri, local);
            args.push('--resume', local);
          }
          const result = await ctx.python({
            module: 'models.train',
            args,
            nprocPerNode: input.nprocPerNode > 1 ? input.nprocPerNode : undefined,
            result: PyResult,
            events: PyEvents,
            onEvent: async (ev) => {
              if (ev.event === 'start') ctx.heartbeat({ stage: 'train', epochs: ev.epochs });
              else if (ev.event === 'progress')
                ctx.heartbeat({
                  stage: 'train',
                  epoch: ev.epoch,
                  step: ev.step,
                  stepsPerEpoch: ev.steps_per_epoch,
                  loss: ev.loss,
                  samplesPerSec: ev.samples_per_sec,
                });
              else {
                const uri = `${prefix}checkpoints/epoch-${ev.epoch}.pt`;
                await store.putFile(uri, ev.path);
                ctx.heartbeat({ checkpointEpoch: ev.epoch, checkpointUri: uri });
              }
            },
            onStart: (pid) => ctx.heartbeat({ pid }),
          });

          ctx.heartbeat({ stage: 'upload' });
          const modelUri = `${prefix}model.pt`;
          await store.putFile(modelUri, result.model_path);
          return {
            trainingKey: key,
            uri: prefix,
            modelUri,
            epochs: result.epochs,
            finalLoss: result.final_loss,
            samplesPerSec: result.samples_per_sec,
            trainSeconds: result.train_seconds,
            worldSize: result.world_size,
            resumedFromEpoch: result.resumed_from_epoch,
            config: result.config,
            reused: false,
          };
        },
      });
    },
  };
}

/** Downloads a training's model.pt into a local directory. */
export async function localModel(modelUri: string, dir: string, store: ObjectStore): Promise<string> {
  const file = path.join(dir, 'model.pt');
  await fs.mkdir(dir, { recursive: true });
  await store.downloadFile(modelUri, file);
  return file;
}
