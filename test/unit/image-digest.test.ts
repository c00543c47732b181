// Digests: parsing (each malformed part named), hashing, and the streaming
// verifier (digest and size checked, excess bytes refused early).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { digestOf, DigestVerifier, isDigest, parseDigest, sha256Hex } from '../../agent/image/digest.js';

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

function isInvalid(field: string, message: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof LxrError, `not an LxrError: ${String(e)}`);
    assert.equal(e.reason, 'LXR_INVALID_ARGUMENT');
    assert.equal(e.field, field);
    assert.match(e.message, message);
    return true;
  };
}

describe('parseDigest', () => {
  const good: Array<[string, string, string]> = [
    [`sha256:${EMPTY_SHA256}`, 'sha256', EMPTY_SHA256],
    [`sha256:${'0'.repeat(64)}`, 'sha256', '0'.repeat(64)],
    [`sha512:${'ab'.repeat(64)}`, 'sha512', 'ab'.repeat(64)],
  ];
  for (const [input, algorithm, hex] of good) {
    it(`accepts ${input.slice(0, 20)}...`, () => {
      assert.deepEqual(parseDigest(input), { algorithm, hex });
      assert.equal(isDigest(input), true);
    });
  }

  const bad: Array<[string, RegExp]> = [
    ['', /empty/],
    [EMPTY_SHA256, /missing ':'/],
    [`:${EMPTY_SHA256}`, /algorithm "" is malformed/],
    [`SHA256:${EMPTY_SHA256}`, /algorithm "SHA256" is malformed/],
    [`sha-:${EMPTY_SHA256}`, /algorithm "sha-" is malformed/],
    [`md5:${'a'.repeat(32)}`, /unsupported digest algorithm "md5"/],
    [`sha384:${'a'.repeat(96)}`, /unsupported digest algorithm "sha384"/],
    [`sha256:${EMPTY_SHA256.toUpperCase()}`, /hex must be lowercase/],
    [`sha256:${EMPTY_SHA256.slice(0, 63)}`, /must be 64 characters, got 63/],
    [`sha256:${EMPTY_SHA256}0`, /must be 64 characters, got 65/],
    ['sha256:', /must be 64 characters, got 0/],
    [`sha256:${'g'.repeat(64)}`, /characters other than 0-9a-f/],
    [`sha256:${EMPTY_SHA256.slice(0, 60)}:abc`, /characters other than 0-9a-f/],
    [`sha512:${EMPTY_SHA256}`, /sha512 hex must be 128 characters, got 64/],
    [` sha256:${EMPTY_SHA256}`, /malformed/],
  ];
  for (const [input, message] of bad) {
    it(`rejects ${JSON.stringify(input.length > 24 ? `${input.slice(0, 24)}...` : input)}`, () => {
      assert.throws(() => parseDigest(input), isInvalid('digest', message));
      assert.equal(isDigest(input), false);
    });
  }

  it('names the caller’s field', () => {
    assert.throws(() => parseDigest('nope', 'layers[2].digest'), isInvalid('layers[2].digest', /missing ':'/));
  });
});

describe('hashing', () => {
  it('sha256Hex and digestOf agree with node:crypto', () => {
    assert.equal(sha256Hex(''), EMPTY_SHA256);
    assert.equal(sha256Hex(Buffer.from('hello')), createHash('sha256').update('hello').digest('hex'));
    assert.equal(digestOf('hello'), `sha256:${sha256Hex('hello')}`);
    assert.equal(digestOf('hello', 'sha512'), `sha512:${createHash('sha512').update('hello').digest('hex')}`);
  });
});

/** Runs `chunks` through a verifier into a sink; returns what reached the sink. `counter.pulled` counts chunks the source produced. */
async function run(chunks: Buffer[], verifier: DigestVerifier, counter = { pulled: 0 }): Promise<Buffer> {
  const got: Buffer[] = [];
  const source = Readable.from(
    (function* () {
      for (const c of chunks) {
        counter.pulled++;
        yield c;
      }
    })(),
  );
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      got.push(chunk);
      cb();
    },
  });
  await pipeline(source, verifier, sink);
  return Buffer.concat(got);
}

describe('DigestVerifier', () => {
  const data = Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(1000));
  const digest = digestOf(data);
  const parts = [data.subarray(0, 1000), data.subarray(1000, 20000), data.subarray(20000)];

  it('passes matching content through unchanged', async () => {
    const v = new DigestVerifier(digest, { expectedSize: data.length });
    const out = await run(parts, v);
    assert.ok(out.equals(data));
    assert.equal(v.size, data.length);
    assert.equal(v.actual, digest);
  });

  it('works without an expected size, and for sha512', async () => {
    await run(parts, new DigestVerifier(digest));
    await run(parts, new DigestVerifier(digestOf(data, 'sha512'), { expectedSize: data.length }));
  });

  it('verifies empty content', async () => {
    await run([], new DigestVerifier(`sha256:${EMPTY_SHA256}`, { expectedSize: 0 }));
  });

  it('reports progress', async () => {
    const seen: number[] = [];
    await run(parts, new DigestVerifier(digest, { onBytes: (n) => seen.push(n) }));
    assert.deepEqual(seen, [1000, 20000, data.length]);
  });

  it('fails on a digest mismatch, naming both digests', async () => {
    const other = digestOf('something else');
    await assert.rejects(run(parts, new DigestVerifier(other)), isInvalid('digest', new RegExp(`digest mismatch: expected ${other}, got ${digest}`)));
  });

  it('fails on one flipped byte', async () => {
    const tampered = Buffer.from(data);
    tampered.writeUInt8(tampered.readUInt8(5000) ^ 1, 5000);
    await assert.rejects(run([tampered], new DigestVerifier(digest, { expectedSize: data.length })), isInvalid('digest', /digest mismatch/));
  });

  it('fails on truncated content as a size mismatch', async () => {
    await assert.rejects(
      run([data.subarray(0, 100)], new DigestVerifier(digest, { expectedSize: data.length })),
      isInvalid('size', new RegExp(`expected ${data.length} bytes, got 100`)),
    );
  });

  it('fails early when more bytes than expected arrive', async () => {
    const v = new DigestVerifier(digest, { expectedSize: 10 });
    const many = Array.from({ length: 100 }, () => Buffer.alloc(64, 1));
    const counter = { pulled: 0 };
    await assert.rejects(run(many, v, counter), isInvalid('size', /expected 10 bytes, got more than that \(64 so far\)/));
    // The pipeline stopped near the first oversized chunk, not after all 100.
    assert.ok(counter.pulled < 100, `pulled ${counter.pulled}`);
  });

  it('refuses a bad digest or size up front', () => {
    assert.throws(() => new DigestVerifier('sha256:nope'), isInvalid('digest', /64 characters|other than/));
    assert.throws(() => new DigestVerifier(digest, { expectedSize: -1 }), isInvalid('size', /non-negative/));
    assert.throws(() => new DigestVerifier(digest, { expectedSize: 1.5 }), isInvalid('size', /non-negative/));
  });
});
