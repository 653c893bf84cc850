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
import { TrainResult, type ClusterAccess, type TrainHeartbeat, type TrainInput } from './contracts';
import type { ActivityDeps } from './deps';
import { runPythonStep } from './python-step';
import { clusterPaths } from '../cluster/state';
import {
  fetchFromRank0,
  nodeDirs,
  rank0Command,
  runWorkerRanks,
  stageOnNodes,
  stopTrainingOnNodes,
} from './cluster-run';
import { cancellationSignal, lastHeartbeatDetails } from './heartbeat';

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
  recent_prior: z
    .object({ days: z.number(), beta: z.number(), 'valid_ndcg@10': z.number(), 'base_valid_ndcg@10': z.number() })
    .optional(),
});

export function trainingKey(
  input: Pick<TrainInput, 'dataset' | 'config' | 'nprocPerNode' | 'rerun'> & { cluster?: { nodes: unknown[] } },
): string {
  const canonical = JSON.stringify({
    dataset: `${input.dataset.name}/${input.dataset.version}`,
    config: Object.fromEntries(Object.entries(input.config).sort(([a], [b]) => a.localeCompare(b))),
    nprocPerNode: input.nprocPerNode,
    // More nodes is a larger global batch: another training. Absent for one machine, so its keys stay as they were.
    ...(input.cluster ? { nnodes: input.cluster.nodes.length } : {}),
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

type PyEvent =
  | (z.infer<typeof PyEvents.start> & { event: 'start' })
  | (z.infer<typeof PyEvents.progress> & { event: 'progress' })
  | (z.infer<typeof PyEvents.checkpoint> & { event: 'checkpoint' });

/** Where rank 0 runs and how its files are reached: this machine, or a cluster's nodes over ssh. */
interface Placement {
  args: string[];
  command?: { cmd: string; args: string[] };
  /** The other ranks (nodes 1..N-1): resolves when they finished, rejects when one failed. */
  peers: Promise<void>;
  started: (pid: number) => void;
  /** A file rank 0 wrote, as a local path (fetched from the node when remote). */
  local: (file: string, name: string) => Promise<string>;
  /** Stops whatever is still running elsewhere (the other ranks' ssh sessions) once rank 0 is done or failed. */
  close: () => void;
}

function onThisMachine(input: TrainInput, dir: string, dataDir: string, resume: string | undefined): Placement {
  const args = ['--data-dir', dataDir, '--out-dir', dir, '--config-json', JSON.stringify(input.config)];
  args.push('--supervisor-pid', String(process.pid));
  if (resume) args.push('--resume', resume);
  return {
    args,
    peers: Promise.resolve(),
    started: () => undefined,
    local: (file) => Promise.resolve(file),
    close: () => undefined,
  };
}

async function onCluster(
  deps: ActivityDeps,
  input: TrainInput,
  access: ClusterAccess,
  key: string,
  dir: string,
  dataDir: string,
  resume: string | undefined,
): Promise<Placement> {
  const paths = clusterPaths(deps.config.clustersDir, access.clusterId);
  const dirs = (rank: number) => nodeDirs(access.homes[rank]!, input.dataset, key);
  const signal = cancellationSignal();
  // An earlier attempt (a worker that died) may still be running on the nodes: stop it before starting again.
  await stopTrainingOnNodes(paths, access, signal);
  await stageOnNodes(paths, access, dirs, dataDir, resume, signal);
  const args = (rank: number) => [
    '--data-dir',
    dirs(rank).data,
    '--out-dir',
    dirs(rank).out,
    '--config-json',
    JSON.stringify(input.config),
    ...(resume ? ['--resume', path.posix.join(dirs(rank).out, 'resume.pt')] : []),
  ];
  // The rendezvous id names this attempt's job, so a retry never joins a stale one.
  const rdzvId = `${key}-${Date.now().toString(36)}`;
  const stopPeers = new AbortController();
  const onCancel = () => stopPeers.abort();
  signal?.addEventListener('abort', onCancel, { once: true });
  let rank0Pid: number | undefined;
  const peers = runWorkerRanks(paths, access, input.nprocPerNode, rdzvId, args, stopPeers.signal).catch(
    (err: unknown) => {
      // A rank that failed takes rank 0 down with it rather than leaving it waiting on a collective.
      if (rank0Pid !== undefined)
        try {
          process.kill(-rank0Pid, 'SIGTERM');
        } catch {
          // gone already
        }
      throw err;
    },
  );
  return {
    args: args(0),
    command: rank0Command(paths, access, input.nprocPerNode, rdzvId, args),
    peers,
    started: (pid) => (rank0Pid = pid),
    close: () => {
      rank0Pid = undefined; // exited: its pid may be reused
      stopPeers.abort();
      signal?.removeEventListener('abort', onCancel);
    },
    local: async (file, name) => {
      const local = path.join(dir, name);
      await fetchFromRank0(paths, access, file, local, signal);
      return local;
    },
  };
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
          const resumeFile = resume ? path.join(ctx.dir, 'resume.pt') : undefined;
          if (resume && resumeFile) await store.downloadFile(resume.uri, resumeFile);

          const where = input.cluster
            ? await onCluster(deps, input, input.cluster, key, ctx.dir, dataDir, resumeFile)
            : onThisMachine(input, ctx.dir, dataDir, resumeFile);
          const onEvent = async (ev: PyEvent) => {
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
              await store.putFile(uri, await where.local(ev.path, `epoch-${ev.epoch}.pt`));
              ctx.heartbeat({ checkpointEpoch: ev.epoch, checkpointUri: uri });
            }
          };
          const rank0 = ctx.python({
            module: 'models.train',
            args: where.args,
            nprocPerNode: input.nprocPerNode > 1 ? input.nprocPerNode : undefined,
            command: where.command,
            result: PyResult,
            events: PyEvents,
            onEvent,
            onStart: (pid) => {
              where.started(pid);
              ctx.heartbeat({ pid });
            },
          });
          let result: z.infer<typeof PyResult>;
          try {
            [result] = await Promise.all([rank0, where.peers]);
          } finally {
            where.close();
          }

          ctx.heartbeat({ stage: 'upload' });
          const modelUri = `${prefix}model.pt`;
          await store.putFile(modelUri, await where.local(result.model_path, 'model.pt'));
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
            ...(result.recent_prior && {
              recentPrior: {
                days: result.recent_prior.days,
                beta: result.recent_prior.beta,
                validNdcg: result.recent_prior['valid_ndcg@10'],
                baseValidNdcg: result.recent_prior['base_valid_ndcg@10'],
              },
            }),
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
