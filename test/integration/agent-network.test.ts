// Container networking through the agent, in a lab: a real lxr-agent runs
// in a network namespace of its own (unshare --net: the lab host) with
// --subnet 198.18.6.0/24, and its containers get addresses on its bridge,
// their /etc/hosts, hostname and a default route, and reach each other.
// The image comes by import (the lab host has no way to the registry).
// The machine's own network namespace is never touched.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { unary } from '../../proto/shared/api.js';
import { AgentProcesses, type AgentProc } from '../helpers/agent-process.js';
import { agentTestSkip, busyboxImage, cleanupSteps, grpcErr } from '../helpers/agent.js';
import { removeCgroupTree } from '../helpers/cgroups.js';
import { ExecStream } from '../helpers/exec-stream.js';
import { writeOciLayout } from '../helpers/oci-image.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const run = promisify(execFile);
const SUBNET = '198.18.6';
const BUSYBOX = '/bin/busybox';

describe('agent container network (in a lab network namespace)', { skip: agentTestSkip, timeout: 180_000 }, () => {
  let work: string;
  let lab: AgentProcesses;
  let agent: AgentProc;
  let cgroupParent: string;
  const image = 'lab.example/lxr/busybox:v1';
  const made = new Set<string>();
  const holders: ChildProcess[] = [];
  const exec = async (container: string, args: string[]) => {
    const r = await ExecStream.start(agent.exec, { container, args }).done;
    assert.deepEqual(r.exit, { code: 0, signal: 0 }, `${args.join(' ')}: ${r.stderr.toString()}`);
    return r.stdout.toString();
  };
  const create = async (name: string, command: string[], network: object = {}) => {
    made.add(name);
    return (await unary(agent.ctrs, agent.ctrs.Create, { name, image, command, network })).container!;
  };

  before(async () => {
    work = await ownedTempDir('agentnet');
    cgroupParent = uniqueId('lxr-test-');
    const layout = path.join(work, 'layout');
    await writeOciLayout(layout, await busyboxImage(work), image);
    lab = new AgentProcesses({ work, cgroupParent, wrap: ['unshare', '--net', '--'], args: ['--subnet', `${SUBNET}.0/24`] });
    agent = await lab.spawn();
    await unary(agent.images, agent.images.Import, { path: layout });
  });

  after(async () => {
    const { step, done } = cleanupSteps();
    const live = lab?.live();
    for (const name of made) if (live) await step(() => unary(live.ctrs, live.ctrs.Remove, { name, force: true }).catch(() => {}));
    await step(() => lab?.killAll());
    for (const h of holders) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL');
    await step(async () => {
      const { killed } = await removeCgroupTree(cgroupParent);
      if (killed.length > 0) throw new Error(`processes left in ${cgroupParent}: ${killed.join(' ')}`);
    });
    await step(() => work && rm(work, { recursive: true, force: true }));
    done('agent-network');
  });

  test('containers get addresses, hosts, hostname and a route, and reach each other', async () => {
    const server = uniqueId('srv');
    const client = uniqueId('cli');
    const s = await create(server, ['sh', '-c', 'while :; do echo hello-from-server | nc -l -p 8080; done']);
    const c = await create(client, ['sleep', '3600']);
    assert.equal(s.address, `${SUBNET}.2`);
    assert.equal(c.address, `${SUBNET}.3`);
    for (const name of [server, client]) await unary(agent.ctrs, agent.ctrs.Start, { name });
    assert.equal((await unary(agent.ctrs, agent.ctrs.Get, { name: client })).container!.address, `${SUBNET}.3`);

    assert.match(await exec(client, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']), new RegExp(`inet ${SUBNET}\\.3/24`));
    assert.match(await exec(client, ['ip', 'route']), new RegExp(`default via ${SUBNET}\\.1 dev eth0`));
    assert.match(await exec(client, ['cat', '/etc/hosts']), new RegExp(`${SUBNET}\\.3\\t${client}\\n`));
    assert.equal(await exec(client, ['hostname']), `${client}\n`);
    let reply = '';
    for (let i = 0; i < 20 && !reply.includes('hello-from-server'); i++) {
      reply = (await ExecStream.start(agent.exec, { container: client, args: ['nc', '-w', '2', `${SUBNET}.2`, '8080'] }).done).stdout.toString();
      if (!reply) await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(reply, /hello-from-server/);
    // The bridge is in the lab host's namespace, not the machine's.
    await assert.rejects(run('ip', ['link', 'show', 'lxr0']));
    await run('nsenter', ['-t', String(agent.pid), '-n', 'ip', 'link', 'show', 'lxr0']);
  });

  test('a specific address is honoured or refused by field; mode none has no eth0; removal frees the address', async () => {
    const fixed = uniqueId('fix');
    assert.equal((await create(fixed, ['sleep', '3600'], { address: `${SUBNET}.50` })).address, `${SUBNET}.50`);
    await assert.rejects(create(uniqueId('dup'), ['true'], { address: `${SUBNET}.50` }), grpcErr(grpc.status.ALREADY_EXISTS, 'LXR_ALREADY_EXISTS', { field: 'network.address', message: /in use/ }));
    await assert.rejects(create(uniqueId('gw'), ['true'], { address: `${SUBNET}.1` }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'network.address', message: /gateway/ }));
    await assert.rejects(create(uniqueId('out'), ['true'], { address: '10.9.9.9' }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'network.address', message: /not in/ }));
    await assert.rejects(create(uniqueId('host'), ['true'], { mode: 'host' }), grpcErr(grpc.status.UNIMPLEMENTED, 'LXR_UNSUPPORTED', { field: 'network.mode' }));
    await assert.rejects(create(uniqueId('none'), ['true'], { mode: 'none', address: `${SUBNET}.60` }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'network.address' }));

    const isolated = uniqueId('iso');
    assert.equal((await create(isolated, ['sleep', '3600'], { mode: 'none' })).address, '');
    await unary(agent.ctrs, agent.ctrs.Start, { name: isolated });
    const links = await exec(isolated, ['ip', '-o', 'link']);
    assert.doesNotMatch(links, /eth0/);

    await unary(agent.ctrs, agent.ctrs.Remove, { name: fixed, force: true });
    made.delete(fixed);
    assert.equal((await create(uniqueId('again'), ['sleep', '3600'], { address: `${SUBNET}.50` })).address, `${SUBNET}.50`);
  });

  test('egress leaves with the host\'s address (NAT); a published port is reached from outside and from the host', async () => {
    // A "world" namespace on an uplink of the lab host: it has no route to the containers' subnet.
    const world = spawn('unshare', ['--net', 'sleep', '1000'], { stdio: 'ignore' });
    holders.push(world);
    await new Promise((r) => setTimeout(r, 100));
    const w = String(world.pid);
    const a = String(agent.pid);
    await run('nsenter', ['-t', w, '-n', 'ip', 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1']);
    await run('nsenter', ['-t', w, '-n', 'ip', 'link', 'set', 'up1', 'netns', a]);
    await run('nsenter', ['-t', w, '-n', 'ip', 'addr', 'add', '198.18.7.1/24', 'dev', 'up0']);
    await run('nsenter', ['-t', w, '-n', 'ip', 'link', 'set', 'up0', 'up']);
    await run('nsenter', ['-t', a, '-n', 'ip', 'addr', 'add', '198.18.7.2/24', 'dev', 'up1']);
    await run('nsenter', ['-t', a, '-n', 'ip', 'link', 'set', 'up1', 'up']);

    // Egress: the world answers only because the connection comes from 198.18.7.2.
    const banner = spawn('nsenter', ['-t', w, '-n', BUSYBOX, 'sh', '-c', 'while :; do echo world-hello | busybox nc -l -p 9000; done'], { stdio: 'ignore' });
    holders.push(banner);
    const client = uniqueId('out');
    await create(client, ['sleep', '3600']);
    await unary(agent.ctrs, agent.ctrs.Start, { name: client });
    const fetch = async (args: string[]) => {
      for (let i = 0; i < 30; i++) {
        const r = await run(args[0]!, args.slice(1), { timeout: 10_000 }).then((x) => x.stdout, () => '');
        if (r.trim()) return r;
        await new Promise((res) => setTimeout(res, 100));
      }
      return '';
    };
    let egress = '';
    for (let i = 0; i < 30 && !egress.includes('world-hello'); i++) {
      egress = (await ExecStream.start(agent.exec, { container: client, args: ['nc', '-w', '2', '198.18.7.1', '9000'] }).done).stdout.toString();
      if (!egress) await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(egress, /world-hello/);

    // A published port: from the world to the host's address, and from the host itself.
    const web = uniqueId('web');
    await create(web, ['sh', '-c', 'while :; do echo web-hello | nc -l -p 80; done'], { ports: [{ hostPort: 8080, containerPort: 80 }] });
    await unary(agent.ctrs, agent.ctrs.Start, { name: web });
    assert.match(await fetch(['nsenter', '-t', w, '-n', BUSYBOX, 'nc', '-w', '2', '198.18.7.2', '8080']), /web-hello/);
    assert.match(await fetch(['nsenter', '-t', a, '-n', BUSYBOX, 'nc', '-w', '2', '198.18.7.2', '8080']), /web-hello/);
    await assert.rejects(create(uniqueId('clash'), ['true'], { ports: [{ hostPort: 8080, containerPort: 81 }] }), grpcErr(grpc.status.ALREADY_EXISTS, 'LXR_ALREADY_EXISTS', { field: 'network.ports', message: /8080\/tcp/ }));
    await assert.rejects(create(uniqueId('bad'), ['true'], { ports: [{ hostPort: 0, containerPort: 81 }] }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'network.ports[0].host_port' }));
    await assert.rejects(create(uniqueId('nonet'), ['true'], { mode: 'none', ports: [{ hostPort: 9, containerPort: 9 }] }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'network.ports' }));
    const rules = async () => (await run('nsenter', ['-t', a, '-n', 'iptables', '-w', '-t', 'nat', '-S', 'LXR-PORTS'])).stdout;
    assert.match(await rules(), new RegExp(`lxr:${web}`));
    await unary(agent.ctrs, agent.ctrs.Remove, { name: web, force: true });
    made.delete(web);
    assert.doesNotMatch(await rules(), new RegExp(`lxr:${web}`));
    // Nothing of it in the machine's own tables.
    assert.doesNotMatch((await run('iptables', ['-w', '-t', 'nat', '-S'])).stdout, /LXR-/);
  });

  test('an agent killed right after a container\'s network was set up: the next one rolls it back and the retry works', async () => {
    await lab.kill(agent);
    const doomed = await lab.spawn({ LXR_TEST_CRASH_AT: 'network' });
    const name = uniqueId('crash');
    made.add(name);
    await assert.rejects(unary(doomed.ctrs, doomed.ctrs.Create, { name, image, command: ['sleep', '3600'], requestId: 'r1' }));
    await lab.exited(doomed);
    assert.equal(doomed.proc.signalCode, 'SIGKILL', lab.logs());
    await lab.kill(doomed);
    agent = await lab.spawn();
    await assert.rejects(unary(agent.ctrs, agent.ctrs.Get, { name }), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND'));
    const c = (await unary(agent.ctrs, agent.ctrs.Create, { name, image, command: ['sleep', '3600'], requestId: 'r1' })).container!;
    await unary(agent.ctrs, agent.ctrs.Start, { name });
    // The allocator's state survived the kill: no address is held twice.
    const held = (await unary(agent.ctrs, agent.ctrs.List, {})).containers.map((x) => x.address).filter((a) => a !== '');
    assert.ok(held.includes(c.address));
    assert.equal(new Set(held).size, held.length, `an address is held twice: ${held.join(' ')}`);
    assert.match(await exec(name, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']), new RegExp(`inet ${c.address.replace(/\./g, '\\.')}/24`));
  });
});
