// Two hosts in a lab: two real lxr-agents, each in a network namespace of
// its own (unshare --net) with its own state, socket, cgroup parent and
// subnet from the pool 198.18.8.0/21, joined by veth pairs to a bridge in
// a third namespace (the lab's switch, 198.18.0.0/24). SetPeers gives each
// host a route to the other's subnet via the other's address, and a
// container on one host reaches a container on the other by its address
// (traffic inside the pool is not masqueraded). Nothing touches the
// machine's own namespace.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { HostClient, unary } from '../../proto/shared/api.js';
import { AgentProcesses, type AgentProc } from '../helpers/agent-process.js';
import { agentTestSkip, busyboxImage, cleanupSteps, grpcErr } from '../helpers/agent.js';
import { removeCgroupTree } from '../helpers/cgroups.js';
import { ExecStream } from '../helpers/exec-stream.js';
import { writeOciLayout } from '../helpers/oci-image.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const run = promisify(execFile);
const image = 'lab.example/lxr/busybox:v1';

interface Host {
  name: string;
  lab: AgentProcesses;
  agent: AgentProc;
  host: HostClient;
  address: string;
  subnet: string;
  cgroupParent: string;
}

describe('two hosts: routes between their container subnets', { skip: agentTestSkip, timeout: 180_000 }, () => {
  let work: string;
  let sw: ChildProcess;
  const hosts: Host[] = [];
  const made: Array<[Host, string]> = [];

  const ns = (pid: number, ...args: string[]) => run('nsenter', ['-t', String(pid), '-n', 'ip', ...args]);

  before(async () => {
    work = await ownedTempDir('multihost');
    const layout = path.join(work, 'layout');
    await writeOciLayout(layout, await busyboxImage(work), image);
    sw = spawn('unshare', ['--net', 'sleep', '1000'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 100));
    await ns(sw.pid!, 'link', 'add', 'br0', 'type', 'bridge');
    await ns(sw.pid!, 'link', 'set', 'br0', 'up');
    for (const [i, name] of ['n1', 'n2'].entries()) {
      const subnet = `198.18.${10 + i}.0/24`;
      const cgroupParent = uniqueId('lxr-test-');
      const lab = new AgentProcesses({ work: path.join(work, name), cgroupParent, wrap: ['unshare', '--net', '--'], args: ['--subnet', subnet, '--pool', '198.18.8.0/21'] });
      const agent = await lab.spawn();
      const address = `198.18.0.${i + 1}`;
      // The host's uplink: a veth pair from the switch's bridge into the agent's namespace.
      await ns(sw.pid!, 'link', 'add', `sw${i}`, 'type', 'veth', 'peer', 'name', `up${i}`);
      await ns(sw.pid!, 'link', 'set', `up${i}`, 'netns', String(agent.pid));
      await ns(sw.pid!, 'link', 'set', `sw${i}`, 'master', 'br0', 'up');
      await ns(agent.pid, 'addr', 'add', `${address}/24`, 'dev', `up${i}`);
      await ns(agent.pid, 'link', 'set', `up${i}`, 'up');
      await unary(agent.images, agent.images.Import, { path: layout });
      hosts.push({ name, lab, agent, host: new HostClient(agent.address, grpc.credentials.createInsecure()), address, subnet, cgroupParent });
    }
  });

  after(async () => {
    const { step, done } = cleanupSteps();
    for (const [h, name] of made) await step(() => unary(h.agent.ctrs, h.agent.ctrs.Remove, { name, force: true }).catch(() => {}));
    for (const h of hosts) {
      h.host.close();
      await step(() => h.lab.killAll());
      await step(async () => {
        const { killed } = await removeCgroupTree(h.cgroupParent);
        if (killed.length > 0) throw new Error(`processes left in ${h.cgroupParent}: ${killed.join(' ')}`);
      });
    }
    if (sw && sw.exitCode === null) sw.kill('SIGKILL');
    await step(() => work && rm(work, { recursive: true, force: true }));
    done('agent-multihost');
  });

  test('each host routes to the other\'s subnet; containers talk across hosts with their own addresses', async () => {
    const [n1, n2] = hosts as [Host, Host];
    for (const [h, other] of [[n1, n2], [n2, n1]] as const) {
      const r = await unary(h.host, h.host.SetPeers, { peers: [{ name: other.name, address: other.address, subnet: other.subnet }] });
      assert.deepEqual(r.routes, [`${other.subnet} via ${other.address}`]);
      // again: nothing changes
      assert.deepEqual((await unary(h.host, h.host.SetPeers, { peers: [{ name: other.name, address: other.address, subnet: other.subnet }] })).routes, r.routes);
    }
    const server = uniqueId('srv');
    const client = uniqueId('cli');
    made.push([n2, server], [n1, client]);
    const s = (await unary(n2.agent.ctrs, n2.agent.ctrs.Create, { name: server, image, command: ['sh', '-c', 'while :; do nc -l -p 7000 -e sh -c "echo from-n2"; done'] })).container!;
    const c = (await unary(n1.agent.ctrs, n1.agent.ctrs.Create, { name: client, image, command: ['sleep', '3600'] })).container!;
    assert.equal(s.address, '198.18.11.2');
    assert.equal(c.address, '198.18.10.2');
    await unary(n2.agent.ctrs, n2.agent.ctrs.Start, { name: server });
    await unary(n1.agent.ctrs, n1.agent.ctrs.Start, { name: client });
    let reply = '';
    for (let i = 0; i < 30 && !reply.includes('from-n2'); i++) {
      reply = (await ExecStream.start(n1.agent.exec, { container: client, args: ['nc', '-w', '2', s.address, '7000'] }).done).stdout.toString();
      if (!reply) await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(reply, /from-n2/);
    // The route goes when the peer leaves the list.
    assert.deepEqual((await unary(n1.host, n1.host.SetPeers, { peers: [] })).routes, []);
    assert.doesNotMatch((await ns(n1.agent.pid, 'route')).stdout, /198\.18\.11\.0/);
  });

  test('bad peer lists are refused by field and change nothing', async () => {
    const [n1, n2] = hosts as [Host, Host];
    const bad: Array<[object, string]> = [
      [{ name: 'x', address: 'nope', subnet: n2.subnet }, 'peers[0].address'],
      [{ name: 'x', address: n2.address, subnet: '198.18.11.7/24' }, 'peers[0].subnet'],
      [{ name: 'x', address: n2.address, subnet: n1.subnet }, 'peers[0].subnet'],
    ];
    for (const [peer, field] of bad) {
      await assert.rejects(unary(n1.host, n1.host.SetPeers, { peers: [peer] }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field }));
    }
    await assert.rejects(
      unary(n1.host, n1.host.SetPeers, { peers: [{ name: 'a', address: n2.address, subnet: n2.subnet }, { name: 'b', address: '198.18.0.9', subnet: n2.subnet }] }),
      grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'peers[1].subnet', message: /twice/ }),
    );
    assert.doesNotMatch((await ns(n1.agent.pid, 'route')).stdout, /proto 77/);
  });
});
