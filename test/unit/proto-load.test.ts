// The proto loader (proto/shared/proto-load.ts) against @grpc/proto-loader,
// which it replaced: for a table of messages from both APIs (oneofs, maps,
// bytes, 64-bit integers, enums-as-strings, defaults), both encode the same
// bytes and decode to the same objects. And its JSON cache: used when
// current, rebuilt when a .proto changes, harmless when it cannot be written.
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_DIR } from '../../proto/shared/api.js';
import { loadRoot, serviceDefinition } from '../../proto/shared/proto-load.js';

const FILES = ['lxr/agent/v1/agent.proto', 'lxr/controller/v1/controller.proto', 'grpc/health/v1/health.proto'];
const tmp = mkdtempSync(path.join(os.tmpdir(), 'lxr-proto-load-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('proto-load', () => {
  const ours = loadRoot(PROTO_DIR, FILES, path.join(tmp, 'cache.json'));
  const theirs = {
    ...protoLoader.loadSync('lxr/controller/v1/controller.proto', { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] }),
    ...protoLoader.loadSync('grpc/health/v1/health.proto', { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] }),
  } as Record<string, Record<string, protoLoader.MethodDefinition<unknown, unknown>>>;

  // [service, method, a request, a response]
  const cases: Array<[string, string, unknown, unknown]> = [
    ['lxr.agent.v1.Exec', 'Exec', { start: { container: 'ws1', args: ['sh', '-c', 'echo'], env: ['A=1'], tty: true, rows: 30, cols: 100 } }, { sessionId: 'abc' }],
    ['lxr.agent.v1.Exec', 'Exec', { stdin: Buffer.from([0, 1, 2, 255]) }, { output: { stream: 'stderr', data: Buffer.from('x'), offset: 2 ** 40 } }],
    ['lxr.agent.v1.Exec', 'Attach', { attach: { sessionId: 'ws/1', offset: 0 } }, { gapUntil: 0 }],
    ['lxr.agent.v1.Exec', 'Exec', { closeStdin: true }, { exit: { code: 137, signal: 9 } }],
    ['lxr.agent.v1.Containers', 'Create', { name: 'c', image: 'busybox', labels: { a: '1', 'b.c/d': '' }, limits: { cpus: 1.5, memoryBytes: 2 ** 33, pids: 0 }, network: { mode: 'bridge', ports: [{ hostPort: 80, containerPort: 8080, protocol: 'tcp' }] } }, { container: { name: 'c', state: 'created', pid: 0, labels: {} } }],
    ['lxr.agent.v1.Containers', 'Logs', { name: 'c', follow: true, tail: 0 }, { stream: 'stdout', time: 't', line: Buffer.from('hi'), partial: false }],
    ['lxr.controller.v1.Workspaces', 'Create', { spec: { name: 'ws', image: 'i', cpus: 0.5, memoryBytes: 64 << 20, env: [], hostSelector: { zone: 'a' } }, wait: true }, { workspace: { uid: 'u', state: 'Failed', reasonCode: 'LXR_NOT_FOUND', revision: 2 ** 35 }, created: true }],
    ['lxr.controller.v1.Images', 'Pull', { image: 'busybox', hosts: ['n1'] }, { host: 'n1', progress: { digest: 'sha256:x', state: 'downloading', current: 5, total: 10 } }],
    ['lxr.controller.v1.Images', 'Import', { header: { hosts: [], repository: 'r' } }, { imported: [{ host: 'n1', images: [{ names: ['a'], digest: 'd', sizeBytes: 1 }] }] }],
    ['grpc.health.v1.Health', 'Check', { service: '' }, { status: 'SERVING' }],
    ['lxr.agent.v1.Host', 'GetInfo', {}, {}],
  ];

  it('encodes the same bytes and decodes the same objects as proto-loader', () => {
    for (const [svc, method, req, res] of cases) {
      const a = serviceDefinition(ours, svc)[method]!;
      const b = theirs[svc]![method]!;
      const what = `${svc}/${method}`;
      assert.equal(a.path, b.path, what);
      assert.equal(a.requestStream, b.requestStream, what);
      assert.equal(a.responseStream, b.responseStream, what);
      assert.equal(a.originalName, b.originalName, what);
      const reqA = a.requestSerialize(req);
      assert.deepEqual(Buffer.from(reqA), Buffer.from(b.requestSerialize(req)), `${what} request bytes`);
      assert.deepEqual(a.requestDeserialize(Buffer.from(reqA)), b.requestDeserialize(Buffer.from(reqA)), `${what} request object`);
      const resA = a.responseSerialize(res);
      assert.deepEqual(Buffer.from(resA), Buffer.from(b.responseSerialize(res)), `${what} response bytes`);
      assert.deepEqual(a.responseDeserialize(Buffer.from(resA)), b.responseDeserialize(Buffer.from(resA)), `${what} response object`);
    }
  });

  it('uses its cache when current, rebuilds it when a .proto changed, and works when it cannot write it', () => {
    const dir = path.join(tmp, 'protos');
    for (const f of FILES) {
      mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
      copyFileSync(path.join(PROTO_DIR, f), path.join(dir, f));
    }
    const cache = path.join(tmp, 'c2', 'cache.json');
    loadRoot(dir, FILES, cache);
    const first = readFileSync(cache, 'utf8');
    assert.ok(loadRoot(dir, FILES, cache).lookupService('lxr.controller.v1.Workspaces'));
    assert.equal(readFileSync(cache, 'utf8'), first, 'a current cache is read, not rewritten');
    utimesSync(path.join(dir, FILES[0]!), 5000, 5000);
    loadRoot(dir, FILES, cache);
    assert.notEqual(readFileSync(cache, 'utf8'), first, 'a changed file makes a new cache');
    const ro = path.join(tmp, 'ro');
    mkdirSync(ro);
    chmodSync(ro, 0o500);
    try {
      // Root may write anyway; what matters is that loading works either way.
      assert.ok(loadRoot(dir, FILES, path.join(ro, 'sub', 'cache.json')).lookupService('grpc.health.v1.Health'));
    } finally {
      chmodSync(ro, 0o700);
    }
    assert.ok(existsSync(cache));
  });
});
