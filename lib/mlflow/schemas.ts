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

/** A metric as a run returns it: the latest value per key, with when and at which step it was logged. */
const Metric = z.object({
  key: z.string(),
  value: z.number(),
  timestamp: z.coerce.number().optional(),
  step: z.coerce.number().optional(),
});

export const Run = z.object({
  info: RunInfo,
  data: z
    .object({
      metrics: z.array(Metric).optional(),
      params: z.array(z.object({ key: z.string(), value: z.string() })).optional(),
      tags: z.array(Tag).optional(),
    })
    .optional(),
  /** MLflow 3: the logged models this run produced (`runs/outputs`). */
  outputs: z
    .object({
      model_outputs: z.array(z.object({ model_id: z.string(), step: z.coerce.number().optional() })).optional(),
    })
    .optional(),
});
export type MlflowRun = z.infer<typeof Run>;

/** MLflow 3's LoggedModel status names (LoggedModelStatus in its protos). */
export const LOGGED_MODEL_STATUS = {
  pending: 'LOGGED_MODEL_PENDING',
  ready: 'LOGGED_MODEL_READY',
  failed: 'LOGGED_MODEL_UPLOAD_FAILED',
} as const;
export type LoggedModelStatus = (typeof LOGGED_MODEL_STATUS)[keyof typeof LOGGED_MODEL_STATUS];

/**
 * An MLflow 3 LoggedModel: a model with its own artefact location (`.../models/<model_id>/artifacts`), produced by a
 * run (`source_run_id`); a registered version points at it by `model_id` and source `models:/<model_id>`.
 */
export const LoggedModel = z.object({
  info: z.object({
    model_id: z.string(),
    experiment_id: z.string(),
    name: z.string(),
    artifact_uri: z.string(),
    status: z.string().optional(),
    source_run_id: z.string().optional(),
    model_type: z.string().optional(),
    creation_timestamp_ms: z.coerce.number().optional(),
    tags: z.array(Tag).optional(),
  }),
  data: z
    .object({
      params: z.array(z.object({ key: z.string(), value: z.string().optional().default('') })).optional(),
      metrics: z.array(Metric).optional(),
    })
    .optional(),
});
export type MlflowLoggedModel = z.infer<typeof LoggedModel>;

export const ModelVersion = z.object({
  name: z.string(),
  version: z.string(),
  source: z.string().optional(),
  run_id: z.string().optional(),
  /** MLflow 3: the LoggedModel this version was registered from. */
  model_id: z.string().optional(),
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
  loggedModel: z.object({ model: LoggedModel }),
  searchLoggedModels: z.object({ models: z.array(LoggedModel).optional(), next_page_token: z.string().optional() }),
  empty: z.object({}).passthrough(),
};
