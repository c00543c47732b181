// Content digests ("sha256:<hex>", OCI image spec "digests"): validation, and
// a streaming verifier that hashes bytes in flight so corrupted or tampered
// content is caught before anything trusts it.

import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { invalidArgument, LxrError } from '../../proto/shared/errors.js';

/** "algorithm:hex", e.g. "sha256:e3b0c442...". Validate with parseDigest. */
export type Digest = string;

export type DigestAlgorithm = 'sha256' | 'sha512';

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
}

/** Hex length per algorithm: a digest of the wrong length can never match. */
const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

// The OCI grammar for the algorithm part; anything matching it but not in
// HEX_LENGTH is well formed yet unsupported, which deserves its own message.
const ALGORITHM_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*$/;

/**
 * Validates a digest. Errors are invalidArgument(field, ...) and say which
 * part is wrong: the separator, the algorithm, the hex's case, characters or
 * length. Only lowercase hex is accepted, as in the OCI spec: a digest is an
 * identifier, and two spellings of one digest would break content addressing.
 */
export function parseDigest(s: string, field = 'digest'): ParsedDigest {
  if (typeof s !== 'string' || s === '') throw invalidArgument(field, 'digest is empty');
  const colon = s.indexOf(':');
  if (colon < 0) throw invalidArgument(field, `${JSON.stringify(s)} is not algorithm:hex (missing ':')`);
  const algorithm = s.slice(0, colon);
  const hex = s.slice(colon + 1);
  if (!ALGORITHM_RE.test(algorithm)) {
    throw invalidArgument(field, `${JSON.stringify(s)}: algorithm ${JSON.stringify(algorithm)} is malformed`);
  }
  if (!Object.hasOwn(HEX_LENGTH, algorithm)) {
    throw invalidArgument(field, `${JSON.stringify(s)}: unsupported digest algorithm ${JSON.stringify(algorithm)} (want sha256 or sha512)`);
  }
  const algo = algorithm as DigestAlgorithm;
  const want = HEX_LENGTH[algo];
  if (/[A-F]/.test(hex) && /^[0-9a-fA-F]*$/.test(hex)) {
    throw invalidArgument(field, `${JSON.stringify(s)}: hex must be lowercase`);
  }
  if (!/^[0-9a-f]*$/.test(hex)) {
    throw invalidArgument(field, `${JSON.stringify(s)}: hex contains characters other than 0-9a-f`);
  }
  if (hex.length !== want) {
    throw invalidArgument(field, `${JSON.stringify(s)}: ${algo} hex must be ${want} characters, got ${hex.length}`);
  }
  return { algorithm: algo, hex };
}

export function isDigest(s: string): boolean {
  try {
    parseDigest(s);
    return true;
  } catch {
    return false;
  }
}

export function sha256Hex(buf: Buffer | Uint8Array | string): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** The digest of a buffer, "sha256:<hex>" by default. */
export function digestOf(buf: Buffer | Uint8Array | string, algorithm: DigestAlgorithm = 'sha256'): Digest {
  return `${algorithm}:${createHash(algorithm).update(buf).digest('hex')}`;
}

export const digestMismatch = (expected: Digest, actual: Digest): LxrError =>
  new LxrError('LXR_INVALID_ARGUMENT', `digest mismatch: expected ${expected}, got ${actual}`, { field: 'digest' });

export const sizeMismatch = (digest: Digest, expected: number, actual: string): LxrError =>
  new LxrError('LXR_INVALID_ARGUMENT', `size mismatch for ${digest}: expected ${expected} bytes, got ${actual}`, { field: 'size' });

export function checkSize(size: number, field = 'size'): void {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw invalidArgument(field, `${String(size)} is not a non-negative integer byte count`);
  }
}

export interface DigestVerifierOptions {
  /** Fail as soon as more bytes than this pass, and at the end if fewer did. */
  expectedSize?: number | undefined;
  /** Called with the running byte count after each chunk (progress reporting). */
  onBytes?: (done: number) => void;
}

/**
 * A pass-through Transform that hashes what flows through it and fails the
 * stream (before its end is signalled downstream) when the digest or size
 * differs from what was expected. Fails early on excess bytes so an endless
 * or oversized source cannot fill the disk.
 */
export class DigestVerifier extends Transform {
  readonly expected: Digest;
  readonly expectedSize: number | undefined;
  private readonly hash: Hash;
  private readonly algorithm: DigestAlgorithm;
  private readonly onBytes: ((done: number) => void) | undefined;
  private bytes = 0;
  private actualDigest: Digest | undefined;

  constructor(expected: Digest, opts: DigestVerifierOptions = {}) {
    super();
    const parsed = parseDigest(expected);
    if (opts.expectedSize !== undefined) checkSize(opts.expectedSize);
    this.expected = expected;
    this.expectedSize = opts.expectedSize;
    this.algorithm = parsed.algorithm;
    this.hash = createHash(parsed.algorithm);
    this.onBytes = opts.onBytes;
  }

  /** Bytes seen so far. */
  get size(): number {
    return this.bytes;
  }

  /** The computed digest, once the stream has ended successfully. */
  get actual(): Digest | undefined {
    return this.actualDigest;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.expectedSize !== undefined && this.bytes > this.expectedSize) {
      cb(sizeMismatch(this.expected, this.expectedSize, `more than that (${this.bytes} so far)`));
      return;
    }
    this.hash.update(chunk);
    this.onBytes?.(this.bytes);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.expectedSize !== undefined && this.bytes !== this.expectedSize) {
      cb(sizeMismatch(this.expected, this.expectedSize, String(this.bytes)));
      return;
    }
    const actual = `${this.algorithm}:${this.hash.digest('hex')}`;
    this.actualDigest = actual;
    if (actual !== this.expected) {
      cb(digestMismatch(this.expected, actual));
      return;
    }
    cb();
  }
}
