// ExecResponse output messages on the wire, without allocating per message.
//
// Output is nearly all of an exec stream's bytes. The generic protobufjs
// encoder allocates a buffer per message, and grpc-js then copies it into a
// frame buffer of its own; with the ring's pieces concatenated first, every
// output byte was allocated three times, and at 1 GiB the agent spent more
// time in the garbage collector (external-memory pressure) than anywhere
// else. This encoder writes an output message into one scratch buffer that it
// reuses: a grpc-js server serializes and copies the result into its frame in
// one synchronous step (ServerInterceptingCall.serializeMessage), so the
// scratch is free again as soon as the serializer returns. The data may be a
// list of pieces (the ring's chunks), written back to back.
//
// Only for a server's responseSerialize: a client-side serializer's result
// may be held on to. Every other ExecResponse goes through the generic one.
import type * as T from './api-types.js';

/**
 * An ExecResponse as a server writes it: output data may be in pieces. The
 * scratch keeps the size of the largest message (about 1 MiB) for good.
 */
export type ExecResponseOut = Omit<T.ExecResponse, 'output'> & { output?: Omit<T.ExecOutput, 'data'> & { data: Buffer | readonly Buffer[] } };

// Field tags: ExecResponse.output = 2, ExecOutput.stream = 1, .data = 2, .offset = 3.
const TAG_OUTPUT = 0x12;
const TAG_STREAM = 0x0a;
const TAG_DATA = 0x12;
const TAG_OFFSET = 0x18;

const varintLength = (n: number): number => {
  let len = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
};

/** Writes n (a non-negative integer up to 2^53) as a varint at pos; the position after it. */
function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 128) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

const STREAMS = new Map<string, Buffer>([
  ['stdout', Buffer.from('stdout')],
  ['stderr', Buffer.from('stderr')],
]);

/**
 * A responseSerialize for ExecResponse: output messages through one reused
 * scratch buffer (the returned Buffer is a view of it, valid until the next
 * call), anything else through `generic`.
 */
export function execResponseSerializer(generic: (value: unknown) => Buffer): (value: ExecResponseOut) => Buffer {
  let scratch = Buffer.allocUnsafe(64 * 1024);
  return (value) => {
    const out = value.output;
    if (!out || value.sessionId != null || value.gapUntil != null || value.exit != null) {
      // Not a plain output message: the generic encoder, which knows nothing of pieces.
      if (out && !(out.data instanceof Uint8Array)) return generic({ ...value, output: { ...out, data: Buffer.concat(out.data) } });
      return generic(value);
    }
    const pieces: readonly Uint8Array[] = out.data instanceof Uint8Array ? [out.data] : out.data;
    let dataLength = 0;
    for (const p of pieces) dataLength += p.length;
    const stream = STREAMS.get(out.stream) ?? Buffer.from(out.stream ?? '');
    const offset = Number(out.offset ?? 0);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`exec output offset ${String(out.offset)} is not a non-negative integer`);
    const inner =
      (stream.length > 0 ? 1 + varintLength(stream.length) + stream.length : 0) +
      (dataLength > 0 ? 1 + varintLength(dataLength) + dataLength : 0) +
      (offset > 0 ? 1 + varintLength(offset) : 0);
    const total = 1 + varintLength(inner) + inner;
    if (scratch.length < total) scratch = Buffer.allocUnsafe(Math.max(total, scratch.length * 2));
    let pos = 0;
    scratch[pos++] = TAG_OUTPUT;
    pos = writeVarint(scratch, pos, inner);
    if (stream.length > 0) {
      scratch[pos++] = TAG_STREAM;
      pos = writeVarint(scratch, pos, stream.length);
      pos += stream.copy(scratch, pos);
    }
    if (dataLength > 0) {
      scratch[pos++] = TAG_DATA;
      pos = writeVarint(scratch, pos, dataLength);
      for (const p of pieces) {
        scratch.set(p, pos);
        pos += p.length;
      }
    }
    if (offset > 0) {
      scratch[pos++] = TAG_OFFSET;
      pos = writeVarint(scratch, pos, offset);
    }
    return scratch.subarray(0, pos);
  };
}
