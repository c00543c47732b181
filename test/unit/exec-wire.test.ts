// The allocation-free ExecResponse encoder (proto/shared/exec-wire.ts): what
// it writes must decode, with the API's own protobuf decoder, to exactly the
// message it was given, whatever the pieces, sizes and offsets.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { ClusterExecClient, ExecClient, type ExecResponse } from '../../proto/shared/api.js';
import { execResponseSerializer, type ExecResponseOut } from '../../proto/shared/exec-wire.js';

const method = ExecClient.service.Exec!;
const encode = method.responseSerialize as (v: ExecResponseOut) => Buffer;
const decode = method.responseDeserialize as (b: Buffer) => ExecResponse;

/** Encodes, copies the result out (it is a view of a scratch buffer) and decodes. */
const roundTrip = (v: ExecResponseOut): ExecResponse => decode(Buffer.from(encode(v)));

describe('exec output on the wire', () => {
  test('the agent and the controller serve Exec and Attach through it', () => {
    for (const svc of [ExecClient.service, ClusterExecClient.service]) {
      for (const m of [svc.Exec!, svc.Attach!]) {
        const out = m.responseSerialize({ output: { stream: 'stdout', data: [Buffer.from('a'), Buffer.from('b')], offset: 1 } });
        assert.deepEqual((m.responseDeserialize(Buffer.from(out)) as ExecResponse).output?.data, Buffer.from('ab'));
      }
    }
  });

  test('pieces arrive as one run of bytes, with stream and offset', () => {
    const pieces = [randomBytes(1), randomBytes(70_000), randomBytes(3), randomBytes(200_000)];
    for (const stream of ['stdout', 'stderr'] as const) {
      const got = roundTrip({ output: { stream, data: pieces, offset: 123_456 } });
      assert.equal(got.output?.stream, stream);
      assert.equal(got.output?.offset, 123_456);
      assert.deepEqual(got.output?.data, Buffer.concat(pieces));
    }
  });

  test('a message relayed as decoded (the controller: msg set, data one Buffer) encodes to the same bytes', () => {
    const original = Buffer.from(encode({ output: { stream: 'stderr', data: [Buffer.from('ab'), Buffer.from('cd')], offset: 2 ** 40 } }));
    const relayed = decode(original);
    assert.equal(relayed.msg, 'output');
    assert.deepEqual(Buffer.from(encode(relayed)), original);
  });

  test('data as a plain Uint8Array, and unset oneof siblings given as null', () => {
    const got = roundTrip({ output: { stream: 'stdout', data: new Uint8Array([1, 2, 3]) as Buffer, offset: 1 }, exit: null as never, sessionId: null as never });
    assert.deepEqual(got.output?.data, Buffer.from([1, 2, 3]));
  });

  test('pieces that reach the generic encoder (another oneof member set too) are joined, not lost', () => {
    const seen: unknown[] = [];
    const enc = execResponseSerializer((v) => (seen.push(v), Buffer.alloc(0)));
    enc({ output: { stream: 'stdout', data: [Buffer.from('x'), Buffer.from('y')], offset: 0 }, gapUntil: 3 });
    assert.deepEqual(seen, [{ output: { stream: 'stdout', data: Buffer.from('xy'), offset: 0 }, gapUntil: 3 }]);
  });

  test('offsets past 32 bits and at the edges of varint lengths', () => {
    for (const offset of [0, 1, 127, 128, 16_383, 16_384, 2 ** 32 - 1, 2 ** 32, 2 ** 35 + 17, Number.MAX_SAFE_INTEGER]) {
      const got = roundTrip({ output: { stream: 'stdout', data: Buffer.from('x'), offset } });
      assert.equal(got.output?.offset, offset, `offset ${offset}`);
    }
  });

  test('data lengths at the edges of varint lengths, and empty data', () => {
    for (const n of [0, 1, 127, 128, 16_383, 16_384, 1 << 20]) {
      const data = randomBytes(n);
      const got = roundTrip({ output: { stream: 'stderr', data, offset: 5 } });
      assert.deepEqual(got.output?.data ?? Buffer.alloc(0), data, `${n} bytes`);
      assert.equal(got.output?.offset, 5);
    }
  });

  test('the scratch grows for a big message and is reused: each result is a view, valid until the next call', () => {
    const enc = execResponseSerializer(() => assert.fail('output must not reach the generic encoder'));
    const big = enc({ output: { stream: 'stdout', data: randomBytes(3 << 20), offset: 0 } });
    assert.ok(big.length > 3 << 20);
    const first = enc({ output: { stream: 'stdout', data: Buffer.from('first'), offset: 0 } });
    const copy = Buffer.from(first);
    const second = enc({ output: { stream: 'stdout', data: Buffer.from('other'), offset: 0 } });
    assert.equal(first.buffer, second.buffer, 'the same scratch memory');
    assert.notDeepEqual(Buffer.from(first), copy, 'the earlier view now shows the later message');
    assert.deepEqual(decode(copy).output?.data, Buffer.from('first'));
  });

  test('every other message goes through the generic encoder', () => {
    assert.equal(roundTrip({ sessionId: 'abc' }).sessionId, 'abc');
    assert.equal(roundTrip({ gapUntil: 2 ** 33 }).gapUntil, 2 ** 33);
    assert.deepEqual(roundTrip({ exit: { code: 137, signal: 9 } }).exit, { code: 137, signal: 9 });
    const seen: unknown[] = [];
    const enc = execResponseSerializer((v) => (seen.push(v), Buffer.alloc(0)));
    enc({ sessionId: 's' });
    enc({ output: { stream: 'stdout', data: Buffer.from('x'), offset: 0 } });
    assert.deepEqual(seen, [{ sessionId: 's' }]);
  });

  test('a bad offset is refused by name, not written', () => {
    for (const offset of [-1, 1.5, Number.NaN, 2 ** 60]) {
      assert.throws(() => encode({ output: { stream: 'stdout', data: Buffer.from('x'), offset } }), /exec output offset .* is not a non-negative integer/);
    }
  });
});
