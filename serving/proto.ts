/**
 * The recsys.v1 contract loaded at run time with @grpc/proto-loader, typed by the generated types in
 * proto/generated/ (regenerate with `bash proto/generate.sh` after editing the .proto). The loader options below and
 * the generator's flags must agree: field names as in the .proto (keepCase), int64 as JS numbers (epoch milliseconds
 * fit exactly), enums as their names, and defaults filled in so handlers never see an absent scalar.
 */
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoFile } from 'grpc-health-check';
import type { ProtoGrpcType as AdminGrpcType } from '../proto/generated/admin';
import type { ProtoGrpcType as RecommenderGrpcType } from '../proto/generated/recommender';
import { markUnknownFields } from './unknown-fields';

type ProtoGrpcType = RecommenderGrpcType & { recsys: { v1: AdminGrpcType['recsys']['v1'] } };

// Requests are named by their decoded (`__Output`) shapes, which handlers receive: every field is present (defaults).
export type { RecommenderClient, RecommenderHandlers } from '../proto/generated/recsys/v1/Recommender';
export type { RecommendRequest__Output as RecommendRequest } from '../proto/generated/recsys/v1/RecommendRequest';
export type { RecommendResponse } from '../proto/generated/recsys/v1/RecommendResponse';
export type { RecommendResponse__Output } from '../proto/generated/recsys/v1/RecommendResponse';
export type { ScoredItem } from '../proto/generated/recsys/v1/ScoredItem';
export type { FeedbackRequest__Output as FeedbackRequest } from '../proto/generated/recsys/v1/FeedbackRequest';
export type { FeedbackResponse } from '../proto/generated/recsys/v1/FeedbackResponse';
export type { FallbackReason__Output as FallbackReason } from '../proto/generated/recsys/v1/FallbackReason';
export type { HistorySource__Output as HistorySource } from '../proto/generated/recsys/v1/HistorySource';
export type { FeedbackEvent__Output as FeedbackEvent } from '../proto/generated/recsys/v1/FeedbackEvent';
export type { AdminClient, AdminHandlers } from '../proto/generated/recsys/v1/Admin';
export type { LoadedVersion } from '../proto/generated/recsys/v1/LoadedVersion';
export type { TrafficPolicy as TrafficPolicyMessage } from '../proto/generated/recsys/v1/TrafficPolicy';

export const PROTO_DIR = path.resolve(__dirname, '..', 'proto');
export const RECOMMENDER_PROTO = 'recsys/v1/recommender.proto';
export const RECOMMENDER_SERVICE = 'recsys.v1.Recommender';
export const ADMIN_PROTO = 'recsys/v1/admin.proto';
/** The health service's own file, as grpc-health-check ships it (package grpc.health.v1). */
const HEALTH_PROTO = 'health/v1/health.proto';
const HEALTH_PROTO_DIR = path.resolve(healthProtoFile, '..', '..', '..');

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

let cached: { definition: protoLoader.PackageDefinition; grpcType: ProtoGrpcType } | undefined;

/**
 * One package definition holding recsys.v1 (Recommender, Admin) and grpc.health.v1, so server reflection describes
 * them all. Loaded once per process: parsing the .proto files takes milliseconds, but clients and servers in tests
 * create many of them.
 */
function load(): { definition: protoLoader.PackageDefinition; grpcType: ProtoGrpcType } {
  if (!cached) {
    const definition = protoLoader.loadSync([RECOMMENDER_PROTO, ADMIN_PROTO, HEALTH_PROTO], {
      ...LOADER_OPTIONS,
      includeDirs: [PROTO_DIR, HEALTH_PROTO_DIR],
    });
    // The decoder drops fields the .proto does not define; a Recommender request carrying one gets INVALID_ARGUMENT.
    markUnknownFields(definition, RECOMMENDER_SERVICE);
    cached = { definition, grpcType: grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType };
  }
  return cached;
}

export const packageDefinition = (): protoLoader.PackageDefinition => load().definition;
export const recsysV1 = (): ProtoGrpcType['recsys']['v1'] => load().grpcType.recsys.v1;
