// Container networking for real, in a lab: three fresh network namespaces
// (each held by a `sleep` the test starts) play a host and two containers.
// The host gets the bridge, each container a veth pair, an address from
// the lab range 198.18.0.0/15 and a default route; the containers reach
// each other and the host reaches them; detach removes the pair. Nothing
// runs in the machine's own network namespace: every `ip` command goes
// through nsenter into the lab's namespaces.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { BridgeNetwork } from '../../agent/net/bridge-network.js';
import { hostIfName } from '../../agent/net/net-plan.js';
import { LinuxNetRunner } from '../../agent/net/net-runner.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : false;
const BUSYBOX = '/bin/busybox';

/** Runs a command in the network namespace of `pid`; its stdout, or the error. */
const inNs = (pid: number, ...cmd: string[]) => run('nsenter', ['-t', String(pid), '-n', ...cmd], { timeout: 10_000 }).then((r) => r.stdout);

for (const [how, netsetup] of [['the native helper', undefined], ['ip commands', null]] as const) describe(`bridge network in a lab of network namespaces (${how})`, { skip, timeout: 60_000 }, () => {
  const holders: ChildProcess[] = [];
  let host: number;
  let c1: number;
  let c2: number;
  let n: BridgeNetwork;

  const holder = async (): Promise<number> => {
    const p = spawn('unshare', ['--net', 'sleep', '1000'], { stdio: 'ignore' });
    holders.push(p);
    await new Promise((r) => setTimeout(r, 50));
    // unshare execs sleep in place: its pid holds the namespace.
    for (let i = 0; i < 50; i++) {
      const ns = await run('readlink', [`/proc/${p.pid}/ns/net`]).then((r) => r.stdout.trim(), () => '');
      const mine = await run('readlink', ['/proc/self/ns/net']).then((r) => r.stdout.trim());
      if (ns && ns !== mine) return p.pid!;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('the namespace holder did not start');
  };

  before(async () => {
    host = await holder();
    c1 = await holder();
    c2 = await holder();
    n = new BridgeNetwork({ runner: new LinuxNetRunner({ hostPid: host, ...(netsetup === null ? { netsetup: null } : {}) }), subnet: '198.18.3.0/24', stateDir: path.join(await tempDir('netlab'), 'alloc') });
  });

  after(() => {
    n?.close();
    // The namespaces (and every link in them) go with their last process.
    for (const p of holders) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  });

  test('containers get eth0 with their address and a default route; they reach each other and the host reaches them', async () => {
    await n.ensureBridge();
    await n.ensureBridge(); // again: nothing changes, nothing fails
    assert.match(await inNs(host, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'lxr0'), /inet 198\.18\.3\.1\/24/);
    const a1 = n.reserve();
    const a2 = n.reserve();
    assert.deepEqual([a1, a2], ['198.18.3.2', '198.18.3.3']);
    await n.attach('c1', c1, a1);
    await n.attach('c2', c2, a2);
    assert.match(await inNs(c1, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'), /inet 198\.18\.3\.2\/24/);
    assert.match(await inNs(c1, 'ip', 'route'), /default via 198\.18\.3\.1 dev eth0/);
    assert.match(await inNs(c1, 'ip', '-o', 'link', 'show', 'lo'), /UP/);
    await inNs(c1, BUSYBOX, 'ping', '-c', '1', '-W', '3', a2);
    await inNs(host, BUSYBOX, 'ping', '-c', '1', '-W', '3', a1);
    // The machine's own namespace has none of it.
    await assert.rejects(run('ip', ['link', 'show', hostIfName('c1')]));

    await n.detach('c1');
    await n.detach('c1'); // again: already gone is fine
    await assert.rejects(inNs(host, 'ip', 'link', 'show', hostIfName('c1')));
    await assert.rejects(inNs(c1, 'ip', 'link', 'show', 'eth0'));
    assert.equal(n.release(a1), true);
    await inNs(c2, BUSYBOX, 'ping', '-c', '1', '-W', '3', '198.18.3.1');
  });

  test('attaching into a namespace that is gone fails clearly and leaves no link behind', async () => {
    const gone = await holder();
    holders.at(-1)!.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
    const a = n.reserve();
    await assert.rejects(n.attach('c3', gone, a), /network: host: (ip link add lxv[0-9a-f]+ type veth peer name eth0 netns \d+|lxr-netsetup attach lxv[0-9a-f]+ .*network namespace)/);
    await assert.rejects(inNs(host, 'ip', 'link', 'show', hostIfName('c3')));
    n.release(a);
  });
});
