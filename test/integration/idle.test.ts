// Idle detection (issue 9), in a lab whose controller stops workspaces
// after 6 s without activity: an untouched workspace stops, saying why; a
// workspace with terminal input stays up; `lxrctl inspect` shows the last
// activity and what it was; `lxrctl start` brings the stopped one back with
// its files.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { labDown, labUp, type LabState } from '../../cli/lab/lab.js';
import { ClusterExecClient, unary, WorkspacesClient, type ExecClient } from '../../proto/shared/api.js';
import type { Workspace } from '../../proto/shared/controller-types.js';
import { agentTestSkip, importBusyboxOn } from '../helpers/agent.js';
import { ExecStream } from '../helpers/exec-stream.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const run = promisify(execFile);
const image = 'lab.example/lxr/busybox:v1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LXRCTL = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'lxrctl');

describe('idle workspaces stop', { skip: agentTestSkip, timeout: 300_000 }, () => {
  let work: string;
  let dir: string;
  let lab: LabState;
  let ws: WorkspacesClient;
  let exec: ExecClient;

  const get = async (name: string): Promise<Workspace> => (await unary(ws, ws.Get, { name })).workspace!;
  const lxrctl = (...args: string[]) => run(LXRCTL, args, { env: { ...process.env, LXR_SERVER: `unix://${lab.controller!.socket}`, LXR_CONFIG: path.join(work, 'config.json') } }).then((r) => r.stdout);

  before(async () => {
    work = await ownedTempDir('idle');
    dir = path.join(work, 'lab');
    lab = await labUp({ name: uniqueId('i').toLowerCase().slice(0, 20), dir, hosts: 1, controller: true, controllerArgs: ['--idle-timeout', '6'] });
    ws = new WorkspacesClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure());
    exec = new ClusterExecClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure());
    await importBusyboxOn(work, lab.hosts.map((h) => h.socket), image);
  });

  after(async () => {
    ws?.close();
    exec?.close();
    if (dir) assert.deepEqual(await labDown(dir), []);
    if (work) await run('rm', ['-rf', work]);
  });

  test('an untouched workspace stops; one with terminal input stays up; start brings it back with its files', async () => {
    for (const name of ['quiet', 'busy']) await unary(ws, ws.Create, { spec: { name, image, command: ['sleep', '3600'] }, wait: true }, { deadline: Date.now() + 120_000 });
    const wrote = await ExecStream.start(exec, { container: 'quiet', args: ['sh', '-c', 'echo kept > /root/file'] }).done;
    assert.equal(wrote.exit?.code, 0);
    // A terminal in busy, typed into every second and a half.
    const term = ExecStream.start(exec, { container: 'busy', args: ['sh'], tty: true, rows: 24, cols: 80 });
    let typing = true;
    const typist = (async () => {
      while (typing) {
        term.input('true\n');
        await sleep(1500);
      }
    })();
    try {
      let quiet = await get('quiet');
      for (let t = 0; t < 40_000 && quiet.state !== 'Stopped'; t += 500) {
        await sleep(500);
        quiet = await get('quiet');
      }
      assert.equal(quiet.state, 'Stopped');
      assert.match(quiet.reason, /^idle: no activity since \S+ \(the last: exec\)$/);
      // The busy one outlives the idle time twice over while it gets input.
      await sleep(12_000);
      const busy = JSON.parse(await lxrctl('inspect', 'busy')) as Workspace;
      assert.equal(busy.state, 'Running');
      assert.equal(busy.lastActivityKind, 'exec input');
      assert.ok(Date.now() - Date.parse(busy.lastActivity!) < 5000, busy.lastActivity);
    } finally {
      typing = false;
      await typist;
      term.detach();
    }
    // Back with its files; a start is activity enough to stay up for now.
    await lxrctl('start', 'quiet');
    const again = JSON.parse(await lxrctl('inspect', 'quiet')) as Workspace;
    assert.equal(again.state, 'Running');
    assert.equal(again.lastActivityKind, 'started');
    const read = await ExecStream.start(exec, { container: 'quiet', args: ['cat', '/root/file'] }).done;
    assert.equal(read.stdout.toString(), 'kept\n');
    // Left alone again, it stops again.
    let w = await get('quiet');
    for (let t = 0; t < 40_000 && w.state !== 'Stopped'; t += 500) {
      await sleep(500);
      w = await get('quiet');
    }
    assert.equal(w.state, 'Stopped');
    for (const name of ['quiet', 'busy']) await unary(ws, ws.Delete, { name }).catch(() => {});
  });
});
