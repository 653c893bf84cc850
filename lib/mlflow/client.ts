/**
 * A small typed client of the MLflow tracking and model-registry REST API (`/api/2.0/mlflow/...`). There is no
 * maintained MLflow client for Node, so this covers what the platform uses: experiments, runs, artefact upload through
 * the tracking server's artefact proxy, registered models, versions, tags and aliases. Responses are validated; every
 * call has a deadline (RECSYS_MLFLOW_TIMEOUT_MS, uploads RECSYS_MLFLOW_UPLOAD_TIMEOUT_MS) and, against a server with
 * authentication, carries MLflow's own credentials (MLFLOW_TRACKING_TOKEN or username and password; ./auth.ts).
 */
import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { config } from '../config';
import { authHeaders, describeMlflowAuth, type MlflowAuth } from './auth';
import {
  ApiError,
  responses,
  type LoggedModelStatus,
  type MlflowLoggedModel,
  type MlflowModelVersion,
  type MlflowRegisteredModel,
  type MlflowRun,
} from './schemas';

export class MlflowError extends Error {
  override readonly name = 'MlflowError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly endpoint: string,
  ) {
    super(`MLflow ${endpoint}: ${code} (HTTP ${status}): ${message}`);
  }
  get notFound(): boolean {
    return this.code === 'RESOURCE_DOES_NOT_EXIST' || this.status === 404;
  }
  get alreadyExists(): boolean {
    return this.code === 'RESOURCE_ALREADY_EXISTS';
  }
}

/** A call that got no usable HTTP answer: no connection, or none within the deadline. */
export class MlflowUnavailableError extends Error {
  override readonly name = 'MlflowUnavailableError';
  constructor(
    readonly endpoint: string,
    readonly timedOut: boolean,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

type Tags = Record<string, string>;
const toTagList = (tags: Tags = {}) => Object.entries(tags).map(([key, value]) => ({ key, value }));

/** Tags of a run or version as a plain record. */
export function tagsOf(entity: { tags?: { key: string; value: string }[] | undefined }): Tags {
  return Object.fromEntries((entity.tags ?? []).map((t) => [t.key, t.value]));
}

/**
 * Quotes a value for MLflow's search filter grammar. MLflow (checked on 3.17) has no escapes: it takes the text
 * between the quotes verbatim, while its tokenizer reads a backslash before a quote as part of the string. So a value
 * is quoted with a quote character it does not contain, and one that ends in a backslash (it would swallow the
 * closing quote) or holds both quote characters cannot be searched for: an error naming it, never a wrong match.
 */
export function filterValue(value: string): string {
  const problem = value.endsWith('\\')
    ? 'ends with a backslash'
    : value.includes("'") && value.includes('"')
      ? 'contains both quote characters'
      : undefined;
  if (problem)
    throw new Error(
      `MLflow filter value ${JSON.stringify(value)} ${problem}: MLflow's filter strings cannot express it`,
    );
  return value.includes("'") ? `"${value}"` : `'${value}'`;
}

/** The text of an error body worth quoting: the title of an HTML page (a proxy's 502), else its start. */
function bodySnippet(text: string, contentType: string | null): string {
  if (/html/i.test(contentType ?? '') || /^\s*</.test(text)) {
    const title = /<title[^>]*>([^<]*)<\/title>/i.exec(text)?.[1]?.trim();
    const plain = text
      .replace(/<[^>]*>/g, ' ')
      .replace(/\s+/g, ' ')
      .trim();
    return `${contentType ?? 'HTML'} page: ${(title || plain).slice(0, 200)}`;
  }
  return text.slice(0, 300);
}

export interface MlflowClientOptions {
  /** Deadline of one REST call, ms. */
  timeoutMs?: number;
  /** Deadline of one artefact upload, ms. */
  uploadTimeoutMs?: number;
  /** Credentials sent with every request, artefact uploads included (default: from the environment). */
  auth?: MlflowAuth;
}

export class MlflowClient {
  readonly timeoutMs: number;
  readonly uploadTimeoutMs: number;
  private readonly auth: MlflowAuth;

  constructor(
    readonly baseUrl: string = config().mlflowUrl,
    options: MlflowClientOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? config().mlflowTimeoutMs;
    this.uploadTimeoutMs = options.uploadTimeoutMs ?? config().mlflowUploadTimeoutMs;
    this.auth = options.auth ?? config().mlflowAuth;
  }

  /** For a refusal, which credentials were sent (401/403 alone do not say whether any were). */
  private authHint(status: number): string {
    return status === 401 || status === 403 ? ` (sent ${describeMlflowAuth(this.auth)})` : '';
  }

  /** One HTTP exchange, body included, under a deadline; transport failures name the endpoint. */
  private async exchange(
    endpoint: string,
    url: string,
    init: RequestInit,
    timeoutMs: number,
  ): Promise<{ res: Response; text: string }> {
    const where = `MLflow ${init.method ?? 'GET'} ${endpoint} at ${this.baseUrl}`;
    try {
      const headers = { ...(init.headers as Record<string, string> | undefined), ...authHeaders(this.auth) };
      const res = await fetch(url, { ...init, headers, signal: AbortSignal.timeout(timeoutMs) });
      return { res, text: await res.text() };
    } catch (err) {
      if ((err as Error).name === 'TimeoutError')
        throw new MlflowUnavailableError(endpoint, true, `${where}: no answer within ${timeoutMs} ms`, { cause: err });
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const detail = cause?.message ?? cause?.code ?? (err as Error).message;
      throw new MlflowUnavailableError(endpoint, false, `${where}: ${detail}`, { cause: err });
    }
  }

  /** The error of a non-2xx answer: MLflow's own code and message when the body is its JSON error. */
  private errorOf(endpoint: string, res: Response, text: string): MlflowError {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const err = ApiError.safeParse(json);
    return new MlflowError(
      res.status,
      err.success ? err.data.error_code : 'HTTP_ERROR',
      (err.success ? err.data.message : bodySnippet(text, res.headers.get('content-type'))) + this.authHint(res.status),
      endpoint,
    );
  }

  private async call<S extends z.ZodType>(
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    endpoint: string,
    schema: S,
    body?: Record<string, unknown>,
  ): Promise<z.infer<S>> {
    let url = `${this.baseUrl}/api/2.0/mlflow/${endpoint}`;
    const init: RequestInit = { method, headers: {} };
    if (method === 'GET' && body) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(body))
        if (v !== undefined) params.set(k, typeof v === 'string' ? v : JSON.stringify(v));
      url += `?${params.toString()}`;
    } else if (body) {
      init.body = JSON.stringify(body);
      init.headers = { 'content-type': 'application/json' };
    }
    const { res, text } = await this.exchange(endpoint, url, init, this.timeoutMs);
    // The status first: a proxy's HTML error page is not JSON, and its status is the news.
    if (!res.ok) throw this.errorOf(endpoint, res, text);
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new Error(
        `MLflow ${endpoint}: HTTP ${res.status} but the body is not JSON: ${bodySnippet(text, res.headers.get('content-type'))}`,
      );
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw new Error(`MLflow ${endpoint}: unexpected response: ${parsed.error.message}`);
    return parsed.data;
  }

  // -- experiments ---------------------------------------------------------------------------------------------

  /** The id of the named experiment, created if missing (safe under concurrent callers). */
  async ensureExperiment(name: string): Promise<string> {
    try {
      return (await this.call('GET', 'experiments/get-by-name', responses.experiment, { experiment_name: name }))
        .experiment.experiment_id;
    } catch (err) {
      if (!(err instanceof MlflowError && err.notFound)) throw err;
    }
    try {
      return (await this.call('POST', 'experiments/create', responses.createExperiment, { name })).experiment_id;
    } catch (err) {
      if (err instanceof MlflowError && err.alreadyExists) return this.ensureExperiment(name);
      throw err;
    }
  }

  // -- runs ----------------------------------------------------------------------------------------------------

  async createRun(experimentId: string, runName: string, tags: Tags = {}): Promise<MlflowRun> {
    return (
      await this.call('POST', 'runs/create', responses.run, {
        experiment_id: experimentId,
        run_name: runName,
        start_time: Date.now(),
        tags: toTagList(tags),
      })
    ).run;
  }

  async getRun(runId: string): Promise<MlflowRun> {
    return (await this.call('GET', 'runs/get', responses.run, { run_id: runId })).run;
  }

  async searchRuns(experimentIds: string[], filter: string, maxResults = 100): Promise<MlflowRun[]> {
    const out = await this.call('POST', 'runs/search', responses.searchRuns, {
      experiment_ids: experimentIds,
      filter,
      max_results: maxResults,
    });
    return out.runs ?? [];
  }

  async logBatch(
    runId: string,
    data: { metrics?: Record<string, number>; params?: Record<string, string>; tags?: Tags },
  ): Promise<void> {
    const timestamp = Date.now();
    await this.call('POST', 'runs/log-batch', responses.empty, {
      run_id: runId,
      metrics: Object.entries(data.metrics ?? {}).map(([key, value]) => ({ key, value, timestamp, step: 0 })),
      params: Object.entries(data.params ?? {}).map(([key, value]) => ({ key, value })),
      tags: toTagList(data.tags),
    });
  }

  async setRunTag(runId: string, key: string, value: string): Promise<void> {
    await this.call('POST', 'runs/set-tag', responses.empty, { run_id: runId, key, value });
  }

  async finishRun(runId: string, status: 'FINISHED' | 'FAILED' | 'KILLED' = 'FINISHED'): Promise<void> {
    await this.call('POST', 'runs/update', responses.empty, { run_id: runId, status, end_time: Date.now() });
  }

  /**
   * Uploads a file as a run artefact through the server's artefact proxy (`--serve-artifacts`), so it shows in the
   * MLflow UI. `artifactPath` is relative to the run's artefact root.
   */
  async uploadArtifact(run: MlflowRun, artifactPath: string, body: Uint8Array | string): Promise<void> {
    await this.uploadTo(run.info.artifact_uri, `run ${run.info.run_id}`, artifactPath, body);
  }

  /** The same PUT to any proxied artefact root (a run's, a logged model's); `owner` names the root in errors. */
  private async uploadTo(root: string, owner: string, artifactPath: string, body: Uint8Array | string): Promise<void> {
    const prefix = 'mlflow-artifacts:/';
    if (!root.startsWith(prefix)) throw new Error(`${owner} artefact root is not proxied: ${root}`);
    const rel = `${root.slice(prefix.length).replace(/^\/+/, '')}/${artifactPath}`;
    const url = `${this.baseUrl}/api/2.0/mlflow-artifacts/artifacts/${rel.split('/').map(encodeURIComponent).join('/')}`;
    const { res, text } = await this.exchange('mlflow-artifacts', url, { method: 'PUT', body }, this.uploadTimeoutMs);
    if (!res.ok)
      throw new MlflowError(
        res.status,
        'ARTIFACT_UPLOAD_FAILED',
        bodySnippet(text, res.headers.get('content-type')) + this.authHint(res.status),
        'mlflow-artifacts',
      );
  }

  async uploadArtifactFile(run: MlflowRun, artifactPath: string, file: string): Promise<void> {
    await this.uploadArtifact(run, artifactPath, await readFile(file));
  }

  // -- logged models (MLflow 3) ------------------------------------------------------------------------------

  /** MLflow takes at most this many params per request (what its own client sends per batch). */
  private static readonly PARAMS_PER_REQUEST = 100;

  /** A new LoggedModel in status PENDING, produced by `sourceRunId`; its params are sent in batches. */
  async createLoggedModel(
    experimentId: string,
    opts: { name: string; sourceRunId?: string; modelType?: string; tags?: Tags; params?: Record<string, string> },
  ): Promise<MlflowLoggedModel> {
    const params = Object.entries(opts.params ?? {}).map(([key, value]) => ({ key, value }));
    const first = params.slice(0, MlflowClient.PARAMS_PER_REQUEST);
    const { model } = await this.call('POST', 'logged-models', responses.loggedModel, {
      experiment_id: experimentId,
      name: opts.name,
      source_run_id: opts.sourceRunId,
      model_type: opts.modelType,
      tags: toTagList(opts.tags),
      params: first,
    });
    for (let i = first.length; i < params.length; i += MlflowClient.PARAMS_PER_REQUEST)
      await this.call('POST', `logged-models/${model.info.model_id}/params`, responses.empty, {
        model_id: model.info.model_id,
        params: params.slice(i, i + MlflowClient.PARAMS_PER_REQUEST),
      });
    return model;
  }

  async getLoggedModel(modelId: string): Promise<MlflowLoggedModel> {
    return (await this.call('GET', `logged-models/${encodeURIComponent(modelId)}`, responses.loggedModel)).model;
  }

  /** Logged models of the experiments matching `filter` (attributes such as `source_run_id`, `name`, `tags.x`). */
  async searchLoggedModels(experimentIds: string[], filter: string, maxResults = 100): Promise<MlflowLoggedModel[]> {
    const out = await this.call('POST', 'logged-models/search', responses.searchLoggedModels, {
      experiment_ids: experimentIds,
      filter,
      max_results: maxResults,
    });
    return out.models ?? [];
  }

  /** Sets the status of a logged model: READY once its artefacts are complete, UPLOAD_FAILED when they cannot be. */
  async finalizeLoggedModel(modelId: string, status: LoggedModelStatus): Promise<MlflowLoggedModel> {
    return (
      await this.call('PATCH', `logged-models/${encodeURIComponent(modelId)}`, responses.loggedModel, {
        model_id: modelId,
        status,
      })
    ).model;
  }

  async setLoggedModelTags(modelId: string, tags: Tags): Promise<void> {
    await this.call('PATCH', `logged-models/${encodeURIComponent(modelId)}/tags`, responses.empty, {
      tags: toTagList(tags),
    });
  }

  /** Records logged models as outputs of a run (the run page's "Logged models"). Not idempotent in MLflow. */
  async logOutputs(runId: string, models: { modelId: string; step?: number }[]): Promise<void> {
    await this.call('POST', 'runs/outputs', responses.empty, {
      run_id: runId,
      models: models.map((m) => ({ model_id: m.modelId, step: m.step ?? 0 })),
    });
  }

  /** Logs run metrics again as the logged model's (MLflow's log-batch with `model_id`), 1000 per request. */
  async logModelMetrics(
    runId: string,
    modelId: string,
    metrics: { key: string; value: number; timestamp: number; step: number }[],
  ): Promise<void> {
    for (let i = 0; i < metrics.length; i += 1000)
      await this.call('POST', 'runs/log-batch', responses.empty, {
        run_id: runId,
        metrics: metrics.slice(i, i + 1000).map((m) => ({ ...m, run_id: runId, model_id: modelId })),
      });
  }

  /** Uploads a file into a logged model's artefacts (`artifactPath` relative to its root). */
  async uploadLoggedModelArtifact(
    model: MlflowLoggedModel,
    artifactPath: string,
    body: Uint8Array | string,
  ): Promise<void> {
    await this.uploadTo(model.info.artifact_uri, `logged model ${model.info.model_id}`, artifactPath, body);
  }

  // -- model registry ------------------------------------------------------------------------------------------

  async ensureRegisteredModel(name: string, description?: string): Promise<MlflowRegisteredModel> {
    try {
      return (await this.call('POST', 'registered-models/create', responses.registeredModel, { name, description }))
        .registered_model;
    } catch (err) {
      if (err instanceof MlflowError && err.alreadyExists) return this.getRegisteredModel(name);
      throw err;
    }
  }

  async getRegisteredModel(name: string): Promise<MlflowRegisteredModel> {
    return (await this.call('GET', 'registered-models/get', responses.registeredModel, { name })).registered_model;
  }

  /**
   * A new version. MLflow 3 registers a logged model with source `models:/<model_id>` and `modelId`; the server then
   * checks that the source is that model and resolves loads to its artefacts.
   */
  async createModelVersion(
    name: string,
    source: string,
    runId: string,
    tags: Tags = {},
    description?: string,
    modelId?: string,
  ): Promise<MlflowModelVersion> {
    return (
      await this.call('POST', 'model-versions/create', responses.modelVersion, {
        name,
        source,
        run_id: runId,
        tags: toTagList(tags),
        description,
        model_id: modelId,
      })
    ).model_version;
  }

  async getModelVersion(name: string, version: string): Promise<MlflowModelVersion> {
    return (await this.call('GET', 'model-versions/get', responses.modelVersion, { name, version })).model_version;
  }

  /**
   * A file of a version's model (e.g. `MLmodel`), read the way MLflow's UI reads it: the server resolves the version's
   * source, a logged model's artefacts included.
   */
  async getModelVersionArtifact(name: string, version: string, artifactPath: string): Promise<string> {
    const endpoint = 'model-versions/get-artifact';
    const query = new URLSearchParams({ path: artifactPath, name, version });
    const { res, text } = await this.exchange(
      endpoint,
      `${this.baseUrl}/${endpoint}?${query.toString()}`,
      { method: 'GET' },
      this.timeoutMs,
    );
    if (!res.ok) throw this.errorOf(endpoint, res, text);
    return text;
  }

  async searchModelVersions(filter: string, maxResults = 200): Promise<MlflowModelVersion[]> {
    const out = await this.call('GET', 'model-versions/search', responses.searchModelVersions, {
      filter,
      max_results: maxResults,
    });
    return out.model_versions ?? [];
  }

  async setModelVersionTag(name: string, version: string, key: string, value: string): Promise<void> {
    await this.call('POST', 'model-versions/set-tag', responses.empty, { name, version, key, value });
  }

  /** Removes a version tag (absent already is fine: MLflow answers RESOURCE_DOES_NOT_EXIST only for the version). */
  async deleteModelVersionTag(name: string, version: string, key: string): Promise<void> {
    await this.call('DELETE', 'model-versions/delete-tag', responses.empty, { name, version, key });
  }

  async setAlias(name: string, alias: string, version: string): Promise<void> {
    await this.call('POST', 'registered-models/alias', responses.empty, { name, alias, version });
  }

  async deleteAlias(name: string, alias: string): Promise<void> {
    await this.call('DELETE', 'registered-models/alias', responses.empty, { name, alias });
  }

  /** The version behind `models:/<name>@<alias>`, or undefined if the alias (or the model) does not exist. */
  async getVersionByAlias(name: string, alias: string): Promise<MlflowModelVersion | undefined> {
    try {
      return (await this.call('GET', 'registered-models/alias', responses.modelVersion, { name, alias })).model_version;
    } catch (err) {
      if (err instanceof MlflowError && (err.notFound || err.code === 'INVALID_PARAMETER_VALUE')) return undefined;
      throw err;
    }
  }
}
