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
// Where grpc-js takes framed responses (grpc-framed.ts, installed by every
// LXR server), an output message of FRAME_MIN bytes or more is written, prefix
// and all, into a frame from a small pool instead, and grpc-js sends that
// frame as it is: no copy and no allocation per message. The frame is the
// message's until the caller's write callback hands it back (releaseFrame);
// one never handed back (a cancelled stream) is left to the garbage
// collector.
//
// Only for a server's responseSerialize: a client-side serializer's result
// may be held on to. Every other ExecResponse goes through the generic one.
import type * as T from './api-types.js';
import { frame, framed, PREFIX_BYTES, writePrefix } from './grpc-framed.js';

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

/** Messages smaller than this go through the scratch (grpc-js copies them into its pooled small buffers). */
export const FRAME_MIN = 16 * 1024;
/** Frames kept for reuse, process-wide (a few per stream in flight: about 16 MiB at most). */
const POOL_MAX = 16;
const FRAME_UNIT = 64 * 1024;
const pool: Buffer[] = [];
let framesMade = 0;
const FRAME = Symbol('exec-wire frame');

/** A frame of at least `bytes`: the smallest such in the pool, or a new one. */
function takeFrame(bytes: number): Buffer {
  let best = -1;
  for (let i = 0; i < pool.length; i++) {
    if (pool[i]!.length >= bytes && (best < 0 || pool[i]!.length < pool[best]!.length)) best = i;
  }
  if (best >= 0) return pool.splice(best, 1)[0]!;
  framesMade++;
  return Buffer.allocUnsafeSlow(Math.ceil(bytes / FRAME_UNIT) * FRAME_UNIT);
}

/**
 * Hands back the frame `value` was serialized into (if it was): call it from
 * the write's callback, once grpc-js has written the message.
 */
export function releaseFrame(value: object): void {
  const f = (value as { [FRAME]?: Buffer })[FRAME];
  if (!f) return;
  delete (value as { [FRAME]?: Buffer })[FRAME];
  if (pool.length < POOL_MAX) return void pool.push(f);
  // Full: keep the larger frames (a pool of small ones would make every large message allocate).
  let smallest = 0;
  for (let i = 1; i < pool.length; i++) if (pool[i]!.length < pool[smallest]!.length) smallest = i;
  if (pool[smallest]!.length < f.length) pool[smallest] = f;
}

/** Frames made so far and frames waiting in the pool (for tests). */
export function frameStats(): { made: number; pooled: number } {
  return { made: framesMade, pooled: pool.length };
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
    let buf: Buffer;
    let pos = 0;
    const framedOut = total >= FRAME_MIN && framed();
    if (framedOut) {
      buf = takeFrame(PREFIX_BYTES + total);
      writePrefix(buf, total);
      pos = PREFIX_BYTES;
      (value as { [FRAME]?: Buffer })[FRAME] = buf;
    } else {
      if (scratch.length < total) scratch = Buffer.allocUnsafe(Math.max(total, scratch.length * 2));
      buf = scratch;
    }
    buf[pos++] = TAG_OUTPUT;
    pos = writeVarint(buf, pos, inner);
    if (stream.length > 0) {
      buf[pos++] = TAG_STREAM;
      pos = writeVarint(buf, pos, stream.length);
      pos += stream.copy(buf, pos);
    }
    if (dataLength > 0) {
      buf[pos++] = TAG_DATA;
      pos = writeVarint(buf, pos, dataLength);
      for (const p of pieces) {
        buf.set(p, pos);
        pos += p.length;
      }
    }
    if (offset > 0) {
      buf[pos++] = TAG_OFFSET;
      pos = writeVarint(buf, pos, offset);
    }
    return framedOut ? frame(buf.subarray(0, pos)) : buf.subarray(0, pos);
  };
}
