/**
 * The Python environment an MLflow Model of ours loads in: the interpreter's version and the installed versions of
 * the packages its `requirements.txt`, `python_env.yaml` and `conda.yaml` pin. Read from the venv the model code runs
 * in (the one models/requirements.lock builds), so the files say exactly what MLflow's own tools need to load the
 * graph, as MLflow writes them when it logs a model itself. Asked once per interpreter and process.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export interface PythonEnvironment {
  /** e.g. 3.11.7 */
  python: string;
  /** Installed version by package, for REQUIREMENTS and BUILD_PACKAGES; absent when not installed. */
  packages: Record<string, string>;
}

/** What loading an ONNX MLflow Model needs (mlflow.onnx imports onnx and onnxruntime; pyfunc uses numpy). */
export const REQUIREMENTS = ['mlflow', 'numpy', 'onnx', 'onnxruntime'] as const;
/** The build dependencies MLflow writes into python_env.yaml (wheel only when installed). */
export const BUILD_PACKAGES = ['pip', 'setuptools', 'wheel'] as const;

const SCRIPT = `
import importlib.metadata as m, json, platform
def version(p):
    try:
        return m.version(p)
    except m.PackageNotFoundError:
        return None
print(json.dumps({"python": platform.python_version(), "packages": {p: version(p) for p in ${JSON.stringify([
  ...REQUIREMENTS,
  ...BUILD_PACKAGES,
])}}}))
`;

const cache = new Map<string, Promise<PythonEnvironment>>();

async function ask(python: string): Promise<PythonEnvironment> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(python, ['-c', SCRIPT], { timeout: 60_000, encoding: 'utf8' }));
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`asking ${python} for its package versions failed: ${(e.stderr || e.message).trim().slice(-500)}`);
  }
  const raw = JSON.parse(stdout) as { python: string; packages: Record<string, string | null> };
  const missing = REQUIREMENTS.filter((p) => !raw.packages[p]);
  if (missing.length > 0)
    throw new Error(`${python} lacks ${missing.join(', ')}: an MLflow ONNX model needs them to load`);
  const packages: Record<string, string> = {};
  for (const [name, version] of Object.entries(raw.packages)) if (version) packages[name] = version;
  return { python: raw.python, packages };
}

/** The environment of the interpreter at `python` (cached; a failed question is asked again next time). */
export function pythonEnvironment(python: string): Promise<PythonEnvironment> {
  let env = cache.get(python);
  if (!env) {
    env = ask(python);
    cache.set(python, env);
    env.catch(() => cache.delete(python));
  }
  return env;
}
