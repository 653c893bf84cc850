/**
 * onnxruntime-node returns typed arrays made in Node's main realm, and onnxruntime-common checks tensor data against
 * the constructors of the realm it was loaded in. Jest runs each test file in its own vm context, so that check fails
 * ("A float32 tensor's data must be type of function Float32Array()"). Before any module of a test file loads, give
 * the file's context the main realm's typed arrays. (Outside jest there is one realm and nothing to do.)
 */
import vm from 'node:vm';

const names = ['Float32Array', 'Float64Array', 'Int8Array', 'Uint8Array', 'Int16Array', 'Uint16Array'];
names.push('Int32Array', 'Uint32Array', 'BigInt64Array', 'BigUint64Array');
for (const name of names) (globalThis as Record<string, unknown>)[name] = vm.runInThisContext(name);
