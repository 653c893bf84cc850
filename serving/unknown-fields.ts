/**
 * Fields the contract does not define. The protobuf decoder drops them silently, so a caller built against a newer or
 * different .proto would get an answer that ignored part of its request. Instead, the Recommender's request
 * deserializers scan the wire bytes against the loaded descriptors (not a hand-kept list) and mark a request that
 * carries an unknown field; validate.ts turns the mark into INVALID_ARGUMENT. (A deserializer that throws becomes
 * INTERNAL in grpc-js, hence the mark rather than an exception.)
 *
 * The scan walks tags only: no allocation unless a field is unknown. Bytes it cannot walk are left to the decoder,
 * which runs first and fails on them as before.
 */
import type { PackageDefinition } from '@grpc/proto-loader';

/** The fields of one message type, by field number; `message` for fields that embed a message (scanned in turn). */
export interface MessageFields {
  readonly name: string;
  readonly fields: Map<number, Field>;
  /** The same fields indexed by number (0 to the largest), for the scan; empty when the numbers are too sparse. */
  readonly byNumber: (Field | undefined)[];
}
interface Field {
  readonly name: string;
  readonly message: MessageFields | undefined;
}

interface FieldDescriptor {
  name: string;
  number: number;
  type: string;
  typeName: string;
}
interface Descriptor {
  name: string;
  field: FieldDescriptor[];
  nestedType: Descriptor[];
}

/** Every message descriptor of the definition by full name, nested types (map entries among them) included. */
function descriptorsOf(definition: PackageDefinition): Map<string, Descriptor> {
  const all = new Map<string, Descriptor>();
  const add = (name: string, d: Descriptor) => {
    all.set(name, d);
    for (const n of d.nestedType) add(`${name}.${n.name}`, n);
  };
  for (const [name, def] of Object.entries(definition)) {
    const type = (def as { type?: unknown }).type as Descriptor | undefined;
    if (type && Array.isArray(type.field)) add(name, type);
  }
  return all;
}

/** The fields of `typeName` (fully qualified, e.g. recsys.v1.RecommendRequest) and of the messages it embeds. */
export function messageFields(definition: PackageDefinition, typeName: string): MessageFields {
  const descriptors = descriptorsOf(definition);
  const built = new Map<string, MessageFields>();
  // protobuf scoping: a relative name is looked up from the innermost enclosing scope outwards.
  const resolve = (ref: string, scope: string): string => {
    if (ref.startsWith('.')) return ref.slice(1);
    for (let s = scope; ; s = s.slice(0, Math.max(0, s.lastIndexOf('.')))) {
      const candidate = s ? `${s}.${ref}` : ref;
      if (descriptors.has(candidate)) return candidate;
      if (!s) throw new Error(`cannot resolve message type ${ref} from ${scope}`);
    }
  };
  const build = (name: string): MessageFields => {
    const done = built.get(name);
    if (done) return done;
    const d = descriptors.get(name);
    if (!d) throw new Error(`no message type ${name} in the package definition`);
    const m: MessageFields = { name, fields: new Map(), byNumber: [] };
    built.set(name, m); // before the fields, so recursive types terminate
    for (const f of d.field) {
      const embedded = f.type === 'TYPE_MESSAGE' ? build(resolve(f.typeName, name)) : undefined;
      m.fields.set(f.number, { name: f.name, message: embedded });
    }
    // Dense when the numbers are (as in our contract); a sparse message keeps the Map alone.
    const max = Math.max(0, ...m.fields.keys());
    if (max < 1024) for (let n = 0; n <= max; n++) m.byNumber.push(m.fields.get(n));
    return m;
  };
  return build(typeName);
}

/** The first unknown field found: its number, the message type it appeared in, and where (`history[1]`; '' = top). */
export interface UnknownField {
  number: number;
  message: string;
  path: string;
}

const MAX_DEPTH = 64;
/** The scan cannot go on (truncated or invalid wire data); the decoder decides about those bytes. */
const STOP = -1;

/** Reads a varint of up to 32 bits at `pos`; returns the position after it, the value in `varint.value`. */
const varint = { value: 0 };
function readVarint32(buf: Uint8Array, pos: number, end: number): number {
  if (pos >= end) return STOP;
  let b = buf[pos++]!;
  if (b < 0x80) {
    varint.value = b; // tags of fields 1..15 and short lengths: the common case
    return pos;
  }
  let value = b & 0x7f;
  for (let scale = 0x80; scale <= 0x10000000 && pos < end; scale *= 0x80) {
    b = buf[pos++]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) {
      varint.value = value;
      return pos;
    }
  }
  return STOP;
}

/** The position after the value of a field with wire type `wireType` starting at `pos`, or STOP. */
function skip(buf: Uint8Array, pos: number, end: number, wireType: number): number {
  switch (wireType) {
    case 0: // varint, up to 10 bytes
      for (let i = 0; i < 10 && pos < end; i++) if (buf[pos++]! < 0x80) return pos;
      return STOP;
    case 1: // 64-bit
      return pos + 8 <= end ? pos + 8 : STOP;
    case 2: {
      const p = readVarint32(buf, pos, end);
      return p !== STOP && p + varint.value <= end ? p + varint.value : STOP;
    }
    case 5: // 32-bit
      return pos + 4 <= end ? pos + 4 : STOP;
    default: // groups (not in proto3) and invalid wire types
      return STOP;
  }
}

/** The index of the occurrence of field `number` that starts at `at` (for the path of a repeated field). */
function occurrence(buf: Uint8Array, pos: number, at: number, number: number): number {
  let n = 0;
  while (pos < at) {
    pos = readVarint32(buf, pos, at);
    if (varint.value >>> 3 === number) n++;
    pos = skip(buf, pos, at, varint.value & 7);
  }
  return n;
}

function scan(buf: Uint8Array, start: number, end: number, m: MessageFields, depth: number): UnknownField | undefined {
  let pos = start;
  while (pos < end) {
    const tagAt = pos;
    pos = readVarint32(buf, pos, end);
    if (pos === STOP) return undefined;
    const tag = varint.value;
    const number = Math.floor(tag / 8);
    const wireType = tag & 7;
    // byNumber is empty only for a sparse message, which looks in the Map.
    const field =
      number < m.byNumber.length ? m.byNumber[number] : m.byNumber.length ? undefined : m.fields.get(number);
    if (!field) return { number, message: m.name, path: '' };
    if (field.message && wireType === 2 && depth < MAX_DEPTH) {
      const p = readVarint32(buf, pos, end);
      const len = varint.value;
      if (p === STOP || p + len > end) return undefined;
      const inner = scan(buf, p, p + len, field.message, depth + 1);
      if (inner) {
        const here = `${field.name}[${occurrence(buf, start, tagAt, number)}]`;
        return { ...inner, path: inner.path ? `${here}.${inner.path}` : here };
      }
      pos = p + len;
    } else {
      pos = skip(buf, pos, end, wireType);
      if (pos === STOP) return undefined;
    }
  }
  return undefined;
}

/** The first field of the encoded message `buf` that `m` (or a message it embeds) does not define, if any. */
export function findUnknownField(buf: Uint8Array, m: MessageFields): UnknownField | undefined {
  return scan(buf, 0, buf.length, m, 0);
}

export function describeUnknownField(u: UnknownField): string {
  return `unknown field ${u.number} in ${u.message}${u.path ? ` at ${u.path}` : ''}`;
}

const UNKNOWN_FIELD = Symbol('unknownField');

/** What is wrong with a decoded request that carried an unknown field (see markUnknownFields), if it did. */
export function unknownFieldOf(request: object): string | undefined {
  return (request as { [UNKNOWN_FIELD]?: string })[UNKNOWN_FIELD];
}

/**
 * Wraps the request deserializers of every method of `service` in `definition` (in place, so servers built from it
 * get them; clients never deserialize requests) so that a request carrying a field its message type does not define
 * is marked, for unknownFieldOf.
 */
export function markUnknownFields(definition: PackageDefinition, service: string): void {
  const methods = definition[service] as Record<
    string,
    { requestDeserialize: (buf: Buffer) => object; requestType: { type: Descriptor } }
  >;
  for (const method of Object.values(methods)) {
    const fields = messageFields(definition, requestTypeName(definition, service, method.requestType));
    const decode = method.requestDeserialize;
    method.requestDeserialize = (buf: Buffer) => {
      const request = decode(buf); // malformed bytes still fail here, as before
      const unknown = findUnknownField(buf, fields);
      if (unknown)
        Object.defineProperty(request, UNKNOWN_FIELD, { value: describeUnknownField(unknown), enumerable: false });
      return request;
    };
  }
}

/**
 * The full name of a method's request type. proto-loader gives the method a copy of the type's descriptor under its
 * simple name, so: the entry of that simple name with the same descriptor, in the service's own package if it has one.
 */
function requestTypeName(definition: PackageDefinition, service: string, requestType: { type: Descriptor }): string {
  const same = JSON.stringify(requestType.type);
  const names = Object.keys(definition).filter(
    (name) =>
      (name === requestType.type.name || name.endsWith(`.${requestType.type.name}`)) &&
      JSON.stringify((definition[name] as { type?: unknown }).type) === same,
  );
  const pkg = service.slice(0, service.lastIndexOf('.') + 1);
  const name = names.find((n) => n.startsWith(pkg)) ?? names[0];
  if (!name)
    throw new Error(`the request type ${requestType.type.name} of ${service} is not in the package definition`);
  return name;
}
