/** Runtime shapes of the MLflow REST responses we use: a server change shows up as a clear error, not as undefined. */
import { z } from 'zod';

const Tag = z.object({ key: z.string(), value: z.string().optional().default('') });
export type MlflowTag = z.infer<typeof Tag>;

export const Experiment = z.object({
  experiment_id: z.string(),
  name: z.string(),
  artifact_location: z.string().optional(),
  lifecycle_stage: z.string().optional(),
});

export const RunInfo = z.object({
  run_id: z.string(),
  experiment_id: z.string(),
  status: z.string().optional(),
  artifact_uri: z.string(),
  lifecycle_stage: z.string().optional(),
});

export const Run = z.object({
  info: RunInfo,
  data: z
    .object({
      metrics: z.array(z.object({ key: z.string(), value: z.number() })).optional(),
      params: z.array(z.object({ key: z.string(), value: z.string() })).optional(),
      tags: z.array(Tag).optional(),
    })
    .optional(),
});
export type MlflowRun = z.infer<typeof Run>;

export const ModelVersion = z.object({
  name: z.string(),
  version: z.string(),
  source: z.string().optional(),
  run_id: z.string().optional(),
  status: z.string().optional(),
  tags: z.array(Tag).optional(),
  aliases: z.array(z.string()).optional(),
  creation_timestamp: z.coerce.number().optional(),
});
export type MlflowModelVersion = z.infer<typeof ModelVersion>;

export const RegisteredModel = z.object({
  name: z.string(),
  aliases: z.array(z.object({ alias: z.string(), version: z.string() })).optional(),
  latest_versions: z.array(ModelVersion).optional(),
});
export type MlflowRegisteredModel = z.infer<typeof RegisteredModel>;

export const ApiError = z.object({ error_code: z.string(), message: z.string() });

export const responses = {
  experiment: z.object({ experiment: Experiment }),
  createExperiment: z.object({ experiment_id: z.string() }),
  run: z.object({ run: Run }),
  searchRuns: z.object({ runs: z.array(Run).optional(), next_page_token: z.string().optional() }),
  registeredModel: z.object({ registered_model: RegisteredModel }),
  modelVersion: z.object({ model_version: ModelVersion }),
  searchModelVersions: z.object({
    model_versions: z.array(ModelVersion).optional(),
    next_page_token: z.string().optional(),
  }),
  empty: z.object({}).passthrough(),
};
