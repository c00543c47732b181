// The lab through the command people use (lxrctl lab up/status/down), black
// box: two hosts and a registry in namespaces of their own; an image pushed
// to the lab registry (skopeo, inside the lab) and pulled by both agents; a
// container on one host reaching one on the other; bad input and a second
// `up` refused clearly; and a teardown that completes even after an agent
// was killed with -9, leaving no process, cgroup, directory or namespace.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { alive, labDown, readLab, type LabState } from '../../cli/lab/lab.js';
import { CLIENT_OPTIONS, ContainersClient, ExecClient, ImagesClient, repoRoot, unary, type PullResponse } from '../../proto/shared/api.js';
import { agentTestSkip, busyboxImage, collect } from '../helpers/agent.js';
import { cgroupDirs } from '../helpers/cgroups.js';
import { ExecStream } from '../helpers/exec-stream.js';
import { writeOciLayout } from '../helpers/oci-image.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const run = promisify(execFile);
const LXRCTL = path.join(repoRoot(), 'bin', 'lxrctl');
const skip = agentTestSkip || (existsSync('/usr/bin/skopeo') ? false : 'needs skopeo (to push into the lab registry)');

/** Runs lxrctl; its exit code and output (never throws). */
function lxrctl(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(LXRCTL, args, { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

describe('the lab (lxrctl lab)', { skip, timeout: 300_000 }, () => {
  let work: string;
  let dir: string;
  let name: string;
  let state: LabState;

  before(async () => {
    work = await ownedTempDir('lab');
    dir = path.join(work, 'lab');
    name = uniqueId('t').toLowerCase().slice(0, 20);
  });

  after(async () => {
    // Whatever happened above, the lab goes.
    if (dir) await labDown(dir);
    if (work) spawnSync('rm', ['-rf', work]);
  });

  test('up brings two hosts and a registry; status reports them', async () => {
    const up = lxrctl('lab', 'up', '--hosts', '2', '--name', name, '--dir', dir);
    assert.equal(up.code, 0, up.err);
    assert.match(up.out, /is up: 2 hosts \(n1 198\.18\.0\.1, n2 198\.18\.0\.2\), registry 198\.18\.0\.254:5000/);
    const st = lxrctl('lab', 'status', '--name', name, '--dir', dir, '-o', 'json');
    assert.equal(st.code, 0, st.err);
    const s = JSON.parse(st.out);
    assert.equal(s.namespace.alive, true);
    assert.deepEqual(s.registry, { address: '198.18.0.254:5000', alive: true });
    assert.deepEqual(s.hosts.map((h: { name: string; address: string; subnet: string; alive: boolean }) => [h.name, h.address, h.subnet, h.alive]), [
      ['n1', '198.18.0.1', '198.19.1.0/24', true],
      ['n2', '198.18.0.2', '198.19.2.0/24', true],
    ]);
    state = readLab(dir)!;
    // The machine's own namespace has none of it.
    await assert.rejects(run('ip', ['link', 'show', 'br0']));
  });

  test('a second up and bad input are refused clearly', () => {
    const again = lxrctl('lab', 'up', '--hosts', '2', '--name', name, '--dir', dir);
    assert.equal(again.code, 1);
    assert.match(again.err, /lab .* already exists/);
    const zero = lxrctl('lab', 'up', '--hosts', '0', '--name', 'other', '--dir', path.join(work, 'other'));
    assert.equal(zero.code, 2);
    assert.match(zero.err, /hosts: must be 1-200, got 0/);
    const badName = lxrctl('lab', 'up', '--name', 'Bad Name', '--dir', path.join(work, 'other'));
    assert.equal(badName.code, 2);
    assert.match(badName.err, /name/);
    assert.equal(existsSync(path.join(work, 'other')), false, 'a refused up leaves nothing');
    assert.equal(lxrctl('lab', 'status', '-o', 'yaml', '--dir', dir).code, 2);
    assert.equal(lxrctl('lab', 'bogus').code, 2);
  });

  test('an image pushed to the lab registry is pulled by both hosts; containers talk across hosts', async () => {
    const layout = path.join(work, 'layout');
    await writeOciLayout(layout, await busyboxImage(work), 'v1');
    await run('nsenter', ['-t', String(state.switch.pid), '-n', 'skopeo', 'copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:v1`, 'docker://198.18.0.254:5000/lxr/busybox:v1']);
    const image = '198.18.0.254:5000/lxr/busybox:v1';
    const clients = state.hosts.map((h) => ({
      images: new ImagesClient(`unix://${h.socket}`, grpc.credentials.createInsecure(), CLIENT_OPTIONS),
      ctrs: new ContainersClient(`unix://${h.socket}`, grpc.credentials.createInsecure(), CLIENT_OPTIONS),
      exec: new ExecClient(`unix://${h.socket}`, grpc.credentials.createInsecure(), CLIENT_OPTIONS),
    }));
    try {
      for (const c of clients) assert.equal((await collect<PullResponse>(c.images.Pull({ image }))).at(-1)?.event, 'image');
      const [c1, c2] = clients as [(typeof clients)[0], (typeof clients)[0]];
      const srv = (await unary(c2.ctrs, c2.ctrs.Create, { name: 'srv', image, command: ['sh', '-c', 'while :; do echo from-n2 | nc -l -p 7000; done'] })).container!;
      await unary(c2.ctrs, c2.ctrs.Start, { name: 'srv' });
      await unary(c1.ctrs, c1.ctrs.Create, { name: 'cli', image, command: ['sleep', '3600'] });
      await unary(c1.ctrs, c1.ctrs.Start, { name: 'cli' });
      let reply = '';
      for (let i = 0; i < 30 && !reply.includes('from-n2'); i++) {
        reply = (await ExecStream.start(c1.exec, { container: 'cli', args: ['nc', '-w', '2', srv.address, '7000'] }).done).stdout.toString();
        if (!reply) await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(reply, /from-n2/);
    } finally {
      for (const c of clients) for (const x of Object.values(c)) x.close();
    }
  });

  test('down completes after an agent was killed with -9, and leaves nothing', async () => {
    const n2 = state.hosts[1]!;
    process.kill(n2.agent.pid, 'SIGKILL');
    for (let i = 0; i < 50 && alive(n2.agent); i++) await new Promise((r) => setTimeout(r, 50));
    const down = lxrctl('lab', 'down', '--name', name, '--dir', dir);
    assert.equal(down.code, 0, down.err);
    assert.match(down.out, /is down/);
    for (const p of [state.switch, state.registry, ...state.hosts.map((h) => h.agent)]) assert.equal(alive(p), false, `pid ${p?.pid} still runs`);
    for (const h of state.hosts) assert.deepEqual(await cgroupDirs(h.cgroupParent), [], h.cgroupParent);
    assert.equal(existsSync(dir), false);
    const st = lxrctl('lab', 'status', '--name', name, '--dir', dir);
    assert.equal(st.code, 4);
    assert.match(st.err, /no lab named/);
    assert.equal(lxrctl('lab', 'down', '--name', name, '--dir', dir).code, 0, 'down of a lab that is gone is fine');
  });
});
