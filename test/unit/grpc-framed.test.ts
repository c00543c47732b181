// Framed responses (proto/shared/grpc-framed.ts) and the recycled exec output
// frames that use them (exec-wire.ts), through a real grpc-js server bound on
// port 0 and a real client: every byte arrives in order while frames are
// reused, messages that are not framed go out as before, and a slow reader
// (frames queued in grpc-js) gets nothing overwritten.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CLIENT_OPTIONS, ExecClient, services, type ExecResponse } from '../../proto/shared/api.js';
import { frameStats, FRAME_MIN, releaseFrame, type ExecResponseOut } from '../../proto/shared/exec-wire.js';
import { frame, framed, install, patch } from '../../proto/shared/grpc-framed.js';
import { bind, newServer } from '../../proto/shared/grpc-server.js';

/** Message i of a stream: `size` bytes that depend on i, so a reused frame shows as wrong bytes. */
function payload(i: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let o = 0; o < size; o += 32) createHash('sha256').update(`${i}:${o}`).digest().copy(b, o);
  return b;
}

describe('framed responses', () => {
  let server: grpc.Server;
  let client: ExecClient;
  /** What the server sends for Exec: `count` messages of `size` bytes, then an exit. */
  const plan = { count: 0, size: 0 };

  before(async () => {
    server = newServer();
    server.addService(services.Exec, {
      Exec: (call: grpc.ServerDuplexStream<unknown, ExecResponseOut>) => {
        call.once('data', () => {
          call.write({ sessionId: 's1' });
          let i = 0;
          let offset = 0;
          const next = (): void => {
            // Two in flight, as the exec session sends them.
            while (i < plan.count && call.writableLength < 2 * plan.size) {
              const data = payload(i++, plan.size);
              const msg: ExecResponseOut = { output: { stream: 'stdout', data: [data.subarray(0, 100), data.subarray(100)], offset } };
              offset += data.length;
              call.write(msg, () => {
                releaseFrame(msg);
                next();
              });
            }
            if (i === plan.count && call.writableLength === 0) {
              i++;
              call.write({ exit: { code: 0, signal: 0 } });
              call.end();
            }
          };
          next();
        });
      },
    });
    const port = await bind(server, '127.0.0.1:0', grpc.ServerCredentials.createInsecure());
    client = new ExecClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), CLIENT_OPTIONS);
  });

  after(() => {
    client.close();
    server.forceShutdown();
  });

  /** Runs one Exec, reading slowly when `delayMs` > 0; every output message as received. */
  function exec(delayMs: number): Promise<ExecResponse[]> {
    return new Promise((resolve, reject) => {
      const call = client.Exec();
      const got: ExecResponse[] = [];
      call.on('data', (m: ExecResponse) => {
        got.push(m);
        if (delayMs > 0 && got.length % 4 === 0) {
          call.pause();
          setTimeout(() => call.resume(), delayMs);
        }
      });
      call.on('error', reject);
      call.on('end', () => resolve(got));
      call.write({ start: { container: 'c', args: ['x'] } });
      call.end();
    });
  }

  function check(got: ExecResponse[]): void {
    assert.equal(got[0]?.sessionId, 's1');
    const outs = got.filter((m) => m.msg === 'output');
    assert.equal(outs.length, plan.count);
    let offset = 0;
    outs.forEach((m, i) => {
      assert.equal(m.output!.offset, offset, `message ${i}: offset`);
      assert.ok(Buffer.from(m.output!.data).equals(payload(i, plan.size)), `message ${i}: its own bytes`);
      offset += plan.size;
    });
    assert.equal(got[got.length - 1]?.exit?.code, 0);
  }

  test('install() put the framed case into this grpc-js, once', () => {
    assert.equal(framed(), true);
    assert.equal(install(), true);
  });

  test('patch() replaces only a method that frames as grpc-js does, and then passes marked frames through', () => {
    const grpcLike = function (this: { handler: { serialize: (v: unknown) => Buffer } }, v: unknown): Buffer {
      const m = this.handler.serialize(v);
      const out = Buffer.alloc(m.length + 5);
      out.writeUInt32BE(m.length, 1);
      m.copy(out, 5);
      return out;
    };
    const compressing = function (this: { handler: { serialize: (v: unknown) => Buffer } }, v: unknown): Buffer {
      const out = grpcLike.call(this, v);
      out[0] = 1;
      return out;
    };
    for (const [what, proto] of [
      ['no such method', {}],
      ['not a function', { serializeMessage: 42 }],
      ['a different frame (compressed flag)', { serializeMessage: compressing }],
      ['one that throws', { serializeMessage: () => { throw new Error('no'); } }],
      ['one that returns no buffer', { serializeMessage: () => 'x' }],
    ] as const) {
      const before = (proto as { serializeMessage?: unknown }).serializeMessage;
      assert.equal(patch(proto), false, what);
      assert.equal((proto as { serializeMessage?: unknown }).serializeMessage, before, `${what}: left as it was`);
    }
    const proto: { serializeMessage?: unknown } = { serializeMessage: grpcLike };
    assert.equal(patch(proto), true);
    const call = (m: Buffer): Buffer => (proto.serializeMessage as (this: unknown, v: unknown) => Buffer).call({ handler: { serialize: () => m } }, null);
    assert.deepEqual(call(Buffer.from('ab')), Buffer.from([0, 0, 0, 0, 2, 0x61, 0x62]), 'a plain message gets the prefix');
    const f = Buffer.from([0, 0, 0, 0, 1, 0x7a]);
    assert.equal(call(frame(f)), f, 'a marked frame is sent as it is');
    assert.notEqual(call(f), f, 'once: the mark is used up');
  });

  test('large output messages arrive intact while their frames are reused', async () => {
    plan.count = 200;
    plan.size = 256 * 1024;
    const before = frameStats();
    check(await exec(0));
    const made = frameStats().made - before.made;
    assert.ok(made <= 8, `${made} frames made for ${plan.count} messages: they are reused`);
    assert.ok(frameStats().pooled > 0, 'frames go back to the pool');
  });

  test('a slow reader gets every message intact (frames wait in grpc-js and are not overwritten)', async () => {
    plan.count = 40;
    plan.size = 300 * 1024;
    check(await exec(20));
  });

  test('messages under FRAME_MIN, and other responses, go out unframed as before', async () => {
    plan.count = 50;
    plan.size = FRAME_MIN / 2;
    const before = frameStats();
    check(await exec(0));
    assert.equal(frameStats().made, before.made, 'no frame for a small message');
  });
});
