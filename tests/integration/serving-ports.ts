/**
 * Private port ranges for the suites that deploy serving environments: one block per suite, so no two suites (nor
 * `make demo`'s 50051/9464/8081) share a port, all below the kernel's ephemeral range (32768-60999 by default), where
 * the local port of an outgoing connection could otherwise take a replica's port before the replica binds it.
 */
import fs from 'node:fs';
import { MAX_REPLICAS, type PortBases } from '../../fleet/environments';

const SUITES = ['rollout', 'deploy', 'cascade', 'families'] as const;
export type ServingSuite = (typeof SUITES)[number];

/** Each block holds three ranges (gRPC, metrics, HTTP) of 1000 ports; a run takes a random 20-port slot in each. */
const FIRST_PORT = 20_000;
const BLOCK = 3_000;

function ephemeralLow(): number {
  try {
    return Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return 32_768;
  }
}

/**
 * Points RECSYS_ENV_*_PORT_BASE at the suite's block, at a random slot per run (a crashed run's replicas are never
 * met).
 */
export function usePrivateServingPorts(suite: ServingSuite): void {
  const slot = 20 * Math.floor(Math.random() * 49);
  const grpc = FIRST_PORT + BLOCK * SUITES.indexOf(suite) + slot;
  const bases: PortBases = { grpc, metrics: grpc + 1_000, http: grpc + 2_000 };
  // Staging's replicas sit above production's: the highest port is http + 2 * MAX_REPLICAS - 1.
  const highest = bases.http + 2 * MAX_REPLICAS - 1;
  const ephemeral = ephemeralLow();
  if (highest >= ephemeral)
    throw new Error(`serving ports up to ${highest} reach the ephemeral range (from ${ephemeral}): lower them`);
  process.env.RECSYS_ENV_PORT_BASE = String(bases.grpc);
  process.env.RECSYS_ENV_METRICS_PORT_BASE = String(bases.metrics);
  process.env.RECSYS_ENV_HTTP_PORT_BASE = String(bases.http);
}
