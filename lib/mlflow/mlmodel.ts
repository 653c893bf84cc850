/**
 * The MLflow Model format for an ONNX graph, written without Python: the `MLmodel` file (the `onnx` flavor and
 * `python_function` over it, the tensor signature, the input example's description) and the files MLflow writes
 * beside it (requirements.txt, python_env.yaml, conda.yaml, input_example.json, serving_input_example.json), the way
 * `mlflow.onnx.log_model` of MLflow 3.17 lays them out (checked against one it logged). Pure: the same description
 * gives the same bytes, so a retried upload rewrites identical files.
 */
import { dump as yamlDump } from 'js-yaml';
import type { TensorSpec } from './onnx-graph';
import { BUILD_PACKAGES, REQUIREMENTS, type PythonEnvironment } from './python-env';

export interface ModelSignature {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

/** A tensor-based input example: input name -> nested arrays (MLflow's `ndarray` example type). */
export type InputExample = Record<string, unknown[]>;

export interface OnnxModelDescription {
  /** The LoggedModel the files belong to (MLmodel's model_id and model_uuid). */
  modelId: string;
  runId: string;
  /** The logged model's artefact root (MLmodel's artifact_path). */
  artifactUri: string;
  /** When the logged model was created, ms: MLmodel's utc_time_created, the same on every retry. */
  createdMs: number;
  /** Path of the graph the onnx flavor loads, inside the model directory. */
  dataPath: string;
  signature: ModelSignature;
  inputExample: InputExample;
  /** Free-form metadata (MLmodel `metadata`), e.g. the other graphs of a cascade. */
  metadata: Record<string, unknown>;
  environment: PythonEnvironment;
  /** Bytes of the graph files, for model_size_bytes. */
  graphBytes: number;
}

export interface ModelFile {
  path: string;
  body: string;
}

export const MLMODEL = 'MLmodel';
export const INPUT_EXAMPLE = 'input_example.json';
export const SERVING_INPUT_EXAMPLE = 'serving_input_example.json';
const CONDA = 'conda.yaml';
const PYTHON_ENV = 'python_env.yaml';
const REQUIREMENTS_TXT = 'requirements.txt';

/** A signature half as MLflow stores it: a JSON list of tensor specs, inside the YAML as a string. */
export function signatureJson(specs: TensorSpec[]): string {
  return JSON.stringify(
    specs.map((s) => ({ name: s.name, type: 'tensor', 'tensor-spec': { dtype: s.dtype, shape: s.shape } })),
  );
}

/** `2026-12-01 19:22:19.920000`, as Python prints a UTC datetime. */
function utcTime(ms: number): string {
  return `${new Date(ms).toISOString().replace('T', ' ').replace('Z', '')}000`;
}

const dump = (doc: unknown) => yamlDump(doc, { sortKeys: true, lineWidth: -1, noRefs: true });

function environmentFiles(env: PythonEnvironment): ModelFile[] {
  const pins = REQUIREMENTS.map((p) => `${p}==${env.packages[p]}`);
  const build = BUILD_PACKAGES.filter((p) => env.packages[p]).map((p) => `${p}==${env.packages[p]}`);
  const pip = env.packages.pip;
  return [
    { path: REQUIREMENTS_TXT, body: `${pins.join('\n')}\n` },
    {
      path: PYTHON_ENV,
      // MLflow's own key order (python, build_dependencies, dependencies), not sorted.
      body: yamlDump(
        { python: env.python, build_dependencies: build, dependencies: [`-r ${REQUIREMENTS_TXT}`] },
        { lineWidth: -1 },
      ),
    },
    {
      path: CONDA,
      body: dump({
        channels: ['conda-forge'],
        dependencies: [`python=${env.python}`, ...(pip ? [`pip<=${pip}`] : ['pip']), { pip: pins }],
        name: 'mlflow-env',
      }),
    },
  ];
}

/**
 * Every file of the model directory except the graphs themselves, the `MLmodel` last: uploaded in this order, a
 * directory with an MLmodel has all its other files.
 */
export function onnxModelFiles(m: OnnxModelDescription): ModelFile[] {
  const example = JSON.stringify(m.inputExample);
  const serving = JSON.stringify({ inputs: m.inputExample }, null, 2);
  const mlmodel = {
    artifact_path: m.artifactUri,
    flavors: {
      onnx: {
        code: null,
        data: m.dataPath,
        onnx_session_options: null,
        onnx_version: m.environment.packages.onnx,
        // Serving runs on CPU; naming CUDA first (MLflow's default) only earns a warning where it is missing.
        providers: ['CPUExecutionProvider'],
      },
      python_function: {
        data: m.dataPath,
        env: { conda: CONDA, virtualenv: PYTHON_ENV },
        loader_module: 'mlflow.onnx',
        python_version: m.environment.python,
      },
    },
    is_signature_from_type_hint: false,
    metadata: m.metadata,
    mlflow_version: m.environment.packages.mlflow,
    model_id: m.modelId,
    // As MLflow counts it: the data and the examples, before the environment files and MLmodel are written.
    model_size_bytes: m.graphBytes + Buffer.byteLength(example) + Buffer.byteLength(serving),
    model_uuid: m.modelId,
    prompts: null,
    run_id: m.runId,
    saved_input_example_info: {
      artifact_path: INPUT_EXAMPLE,
      serving_input_path: SERVING_INPUT_EXAMPLE,
      type: 'ndarray',
    },
    signature: { inputs: signatureJson(m.signature.inputs), outputs: signatureJson(m.signature.outputs), params: null },
    type_hint_from_example: false,
    utc_time_created: utcTime(m.createdMs),
  };
  return [
    ...environmentFiles(m.environment),
    { path: INPUT_EXAMPLE, body: example },
    { path: SERVING_INPUT_EXAMPLE, body: serving },
    { path: MLMODEL, body: dump(mlmodel) },
  ];
}
