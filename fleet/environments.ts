/**
 * Where the serving environments live on this machine: `staging` and `production`, each up to 10 replicas of
 * `recsys serve` on fixed loopback ports, with pid files and logs beside the stack's own (infra/proc.sh's layout, so
 * `make stack-down` can stop them). Replica i of an environment listens on
 *   gRPC     RECSYS_ENV_PORT_BASE (50051)          + offset + i
 *   metrics  RECSYS_ENV_METRICS_PORT_BASE (9464)   + offset + i
 *   HTTP     RECSYS_ENV_HTTP_PORT_BASE (8081)      + offset + i   (the HTTP/JSON API; 8080 is a hand-started server's)
 * with offset 0 for production and 10 for staging. Tests set other bases so they never meet `make demo`'s server.
 */
import path from 'node:path';
import { stackDirOf } from '../lib/config';

export const ENVIRONMENTS = ['staging', 'production'] as const;
export type EnvName = (typeof ENVIRONMENTS)[number];
export const MAX_REPLICAS = 10;
const OFFSET: Record<EnvName, number> = { production: 0, staging: 10 };

export interface PortBases {
  grpc: number;
  metrics: number;
  http: number;
}

export interface Replica {
  env: EnvName;
  index: number;
  /** `env-<env>-<grpc port>`: the pid file and log name (unique per port layout). */
  name: string;
  grpcPort: number;
  metricsPort: number;
  httpPort: number;
  /** host:port of recsys.v1 (Recommender, Admin, health). */
  address: string;
  metricsUrl: string;
  /** The HTTP/JSON API's base URL (POST /v1/recommend, ...). */
  httpUrl: string;
  pidFile: string;
  logFile: string;
}

function portFrom(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port + 2 * MAX_REPLICAS > 65535)
    throw new Error(`${name} must be an integer port in [1, ${65535 - 2 * MAX_REPLICAS}], got ${JSON.stringify(raw)}`);
  return port;
}

/** The port bases, from RECSYS_ENV_PORT_BASE, _METRICS_PORT_BASE and _HTTP_PORT_BASE (read at each call). */
export function portBases(): PortBases {
  return {
    grpc: portFrom('RECSYS_ENV_PORT_BASE', 50051),
    metrics: portFrom('RECSYS_ENV_METRICS_PORT_BASE', 9464),
    http: portFrom('RECSYS_ENV_HTTP_PORT_BASE', 8081),
  };
}

export function checkEnv(env: string): EnvName {
  if (!(ENVIRONMENTS as readonly string[]).includes(env))
    throw new Error(`environment must be one of ${ENVIRONMENTS.join(', ')}, got ${JSON.stringify(env)}`);
  return env as EnvName;
}

export function checkReplicas(replicas: number): number {
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > MAX_REPLICAS)
    throw new Error(`replicas must be an integer in [1, ${MAX_REPLICAS}], got ${replicas}`);
  return replicas;
}

export function replica(env: EnvName, index: number, bases: PortBases = portBases()): Replica {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_REPLICAS)
    throw new Error(`replica index must be in [0, ${MAX_REPLICAS - 1}], got ${index}`);
  const grpcPort = bases.grpc + OFFSET[env] + index;
  const metricsPort = bases.metrics + OFFSET[env] + index;
  const httpPort = bases.http + OFFSET[env] + index;
  const name = `env-${env}-${grpcPort}`;
  const dir = stackDirOf();
  return {
    env,
    index,
    name,
    grpcPort,
    metricsPort,
    httpPort,
    address: `127.0.0.1:${grpcPort}`,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    pidFile: path.join(dir, 'run', `${name}.pid`),
    logFile: path.join(dir, 'logs', `${name}.log`),
  };
}

/** Every replica slot an environment can have (0..MAX_REPLICAS-1). */
export const replicaSlots = (env: EnvName, bases: PortBases = portBases()): Replica[] =>
  Array.from({ length: MAX_REPLICAS }, (_, i) => replica(env, i, bases));
