// Server responses that arrive already framed, so grpc-js sends them as they
// are instead of copying each into a new buffer.
//
// A grpc-js server serializes a response and copies it behind the 5-byte
// gRPC message prefix (compressed flag, length) into a buffer it allocates
// per message (BaseServerInterceptingCall.serializeMessage, grpc-js 1.10 to
// 1.14). For exec output that is a fresh 1 MiB buffer per message: at 1 GiB
// the garbage collector ran about 70 full collections per GiB for external
// memory pressure alone, and the agent stayed under 0.7 GB/s.
//
// install() replaces that one method with the same code plus one case: a
// serializer that returns a buffer marked by frame() (its first 5 bytes are
// the prefix, already written) gets it sent as it is. The replacement is
// checked against the original on a probe message before it goes in; when
// grpc-js has no such method or frames differently, nothing is replaced and
// framed() says false, so serializers return plain messages as before.
//
// Who frames a message owns the buffer until the write's callback: grpc-js
// calls it once HTTP/2 has written the bytes (Node completes an HTTP/2 write
// request after the socket write that carried it), and only then may the
// buffer be reused (exec-wire.ts recycles its frames there).
import { BaseServerInterceptingCall } from '@grpc/grpc-js/build/src/server-interceptors.js';

/** The gRPC length-prefixed message header: 1 byte compressed flag, 4 bytes length. */
export const PREFIX_BYTES = 5;

const marked = new WeakSet<Uint8Array>();
let installed: boolean | null = null;

type Serializing = { handler: { serialize: (v: unknown) => Buffer } };
type SerializeMessage = (this: Serializing, value: unknown) => Buffer;

/**
 * Marks `buf` (prefix included: the caller wrote it with writePrefix) as a
 * complete frame; returns it.
 */
export function frame(buf: Buffer): Buffer {
  marked.add(buf);
  return buf;
}

/** Writes the prefix of an uncompressed message of `length` bytes at the start of `buf`. */
export function writePrefix(buf: Buffer, length: number): void {
  buf[0] = 0;
  buf.writeUInt32BE(length, 1);
}

/** Whether framed responses are sent as they are (install() succeeded). */
export function framed(): boolean {
  return installed === true;
}

function serializeMessage(this: Serializing, value: unknown): Buffer {
  const message = this.handler.serialize(value);
  if (marked.has(message)) {
    marked.delete(message);
    return message;
  }
  const out = Buffer.allocUnsafe(message.byteLength + PREFIX_BYTES);
  writePrefix(out, message.byteLength);
  message.copy(out, PREFIX_BYTES);
  return out;
}

/**
 * Replaces `proto.serializeMessage` with the framed-aware one if, on a probe
 * message, the replacement frames exactly as it does; false (and nothing
 * changed) otherwise. Exported for tests; servers use install().
 */
export function patch(proto: { serializeMessage?: unknown } | undefined): boolean {
  const original = proto?.serializeMessage;
  if (!proto || typeof original !== 'function') return false;
  const probe = Buffer.from('lxr probe');
  const that: Serializing = { handler: { serialize: () => probe } };
  let theirs: unknown;
  try {
    theirs = (original as SerializeMessage).call(that, null);
  } catch {
    return false;
  }
  if (!Buffer.isBuffer(theirs) || !theirs.equals(serializeMessage.call(that, null))) return false;
  proto.serializeMessage = serializeMessage;
  return true;
}

/**
 * Puts the framed-response case into grpc-js's server, once per process;
 * false (and nothing changed) when this grpc-js does not frame the way the
 * replacement does.
 */
export function install(): boolean {
  installed ??= patch((BaseServerInterceptingCall as unknown as { prototype?: { serializeMessage?: unknown } } | undefined)?.prototype);
  return installed;
}
