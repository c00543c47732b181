// Networking as issue 5 asks to show it, in the lab (cli/lab/lab.ts) with
// two hosts: container to container on one host and across hosts; a
// container to its own host; a published port reached from the other host;
// egress NAT to a lab host's address outside the pool (the peer sees the
// host's address, not the container's); and 200 create/delete cycles that
// leave no veth, address, port rule or mount behind; peer lists; and an
// agent killed with -9 and started again hands out no address twice.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { labDown, labRestartAgent, labUp, type LabHost, type LabState } from '../../cli/lab/lab.js';
import { CLIENT_OPTIONS, ContainersClient, ExecClient, HostClient, ImagesClient, unary } from '../../proto/shared/api.js';
import { agentTestSkip, grpcErr, importBusyboxOn } from '../helpers/agent.js';
import { ExecStream } from '../helpers/exec-stream.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const run = promisify(execFile);
const image = 'lab.example/lxr/busybox:v1';

interface Clients {
  host: LabHost;
  ctrs: ContainersClient;
  exec: ExecClient;
  images: ImagesClient;
}

describe('networking in the lab', { skip: agentTestSkip, timeout: 600_000 }, () => {
  let work: string;
  let dir: string;
  let lab: LabState;
  let n1: Clients;
  let n2: Clients;

  const clients = (h: LabHost): Clients => ({
    host: h,
    ctrs: new ContainersClient(`unix://${h.socket}`, grpc.credentials.createInsecure(), CLIENT_OPTIONS),
    exec: new ExecClient(`unix://${h.socket}`, grpc.credentials.createInsecure(), CLIENT_OPTIONS),
    images: new ImagesClient(`unix://${h.socket}`, grpc.credentials.createInsecure(), CLIENT_OPTIONS),
  });
  const inHost = (h: LabHost, ...cmd: string[]) => run('nsenter', ['-t', String(h.agent.pid), '-n', ...cmd], { timeout: 20_000 }).then((r) => r.stdout);
  const start = async (c: Clients, name: string, command: string[], network: object = {}) => {
    const ctr = (await unary(c.ctrs, c.ctrs.Create, { name, image, command, network })).container!;
    await unary(c.ctrs, c.ctrs.Start, { name });
    return ctr;
  };
  /** Retries `nc` from inside a container until it prints something. */
  const ncFrom = async (c: Clients, container: string, host: string, port: number): Promise<string> => {
    for (let i = 0; i < 40; i++) {
      const out = (await ExecStream.start(c.exec, { container, args: ['nc', '-w', '2', host, String(port)] }).done).stdout.toString();
      if (out) return out;
      await new Promise((r) => setTimeout(r, 100));
    }
    return '';
  };

  before(async () => {
    work = await ownedTempDir('labnet');
    dir = path.join(work, 'lab');
    lab = await labUp({ name: uniqueId('n').toLowerCase().slice(0, 20), dir, hosts: 2 });
    [n1, n2] = lab.hosts.map(clients) as [Clients, Clients];
    await importBusyboxOn(work, [n1.host.socket, n2.host.socket], image);
  });

  after(async () => {
    for (const c of [n1, n2]) if (c) for (const x of [c.ctrs, c.exec, c.images]) x.close();
    if (dir) {
      const problems = await labDown(dir);
      assert.deepEqual(problems, []);
    }
    if (work) await run('rm', ['-rf', work]);
  });

  test('container to container on one host and across hosts; a container to its host', async () => {
    await start(n1, 'srv1', ['sh', '-c', 'while :; do echo from-srv1 | nc -l -p 7000; done']);
    const srv2 = await start(n2, 'srv2', ['sh', '-c', 'while :; do echo from-srv2 | nc -l -p 7000; done']);
    const srv1 = (await unary(n1.ctrs, n1.ctrs.Get, { name: 'srv1' })).container!;
    await start(n1, 'cli', ['sleep', '3600']);
    assert.match(await ncFrom(n1, 'cli', srv1.address, 7000), /from-srv1/);
    assert.match(await ncFrom(n1, 'cli', srv2.address, 7000), /from-srv2/);
    // To its own host: a listener in n1's namespace on the bridge's gateway address.
    const listener = execFile('nsenter', ['-t', String(n1.host.agent.pid), '-n', '/bin/busybox', 'sh', '-c', 'echo from-host | busybox nc -l -p 7100']);
    try {
      assert.match(await ncFrom(n1, 'cli', '198.19.1.1', 7100), /from-host/);
    } finally {
      listener.kill('SIGKILL');
    }
  });

  test('a published port is reached from the other host; egress to a lab host outside the pool is NATed', async () => {
    await start(n1, 'web', ['sh', '-c', 'while :; do echo web-hello | nc -l -p 80; done'], { ports: [{ hostPort: 8080, containerPort: 80 }] });
    let got = '';
    for (let i = 0; i < 40 && !got.includes('web-hello'); i++) {
      got = await inHost(n2.host, '/bin/busybox', 'nc', '-w', '2', n1.host.address, '8080').catch(() => '');
    }
    assert.match(got, /web-hello/);
    // n2's host address (198.18.0.2) is outside the pool: n2 sees n1's address as the source.
    const www = path.join(work, 'www');
    await run('mkdir', ['-p', path.join(www, 'cgi-bin')]);
    await run('sh', ['-c', `printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho "$REMOTE_ADDR"\\n' > ${www}/cgi-bin/ip && chmod 755 ${www}/cgi-bin/ip`]);
    const httpd = execFile('nsenter', ['-t', String(n2.host.agent.pid), '-n', '/bin/busybox', 'httpd', '-f', '-p', '7200', '-h', www]);
    try {
      let seen = '';
      for (let i = 0; i < 40 && !/\d+\.\d+/.test(seen); i++) {
        // (busybox's static wget crashes resolving; a request by hand over nc does not)
        const reply = (await ExecStream.start(n1.exec, { container: 'cli', args: ['sh', '-c', "printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 2 198.18.0.2 7200"] }).done).stdout.toString();
        seen = /(\d+\.\d+\.\d+\.\d+)\]?\s*$/.exec(reply)?.[1] ?? '';
        if (!seen) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(seen, '198.18.0.1');
    } finally {
      httpd.kill('SIGKILL');
    }
  });

  test('200 create/delete cycles leave no veth, address, rule or mount behind', async () => {
    const snapshot = async () => ({
      links: (await inHost(n1.host, 'ip', '-o', 'link')).split('\n').filter((l) => /lx[vp]/.test(l)).length,
      rules: (await inHost(n1.host, 'iptables', '-w', '-t', 'nat', '-S', 'LXR-PORTS')).split('\n').filter((l) => l.startsWith('-A')).length,
      mounts: (await run('cat', [`/proc/${n1.host.agent.pid}/mountinfo`])).stdout.split('\n').length,
      // The gateway's MAC stays what the agent set: containers cache it.
      mac: /link\/ether (\S+)/.exec(await inHost(n1.host, 'ip', '-o', 'link', 'show', 'lxr0'))?.[1],
    });
    const before = await snapshot();
    assert.equal(before.mac, '0a:58:c6:13:01:01');
    const addresses = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const name = `cyc${i}`;
      const c = (await unary(n1.ctrs, n1.ctrs.Create, { name, image, command: ['sleep', '3600'], network: i % 10 === 0 ? { ports: [{ hostPort: 9000, containerPort: 80, protocol: 'tcp' }] } : {} })).container!;
      addresses.add(c.address);
      await unary(n1.ctrs, n1.ctrs.Remove, { name, force: true });
    }
    // The released address comes back: the cycles reuse a handful of addresses, not 200.
    assert.ok(addresses.size <= 2, `${addresses.size} distinct addresses over 200 cycles`);
    assert.deepEqual(await snapshot(), before);
  });

  test('peer lists: bad ones are refused by field and change nothing; a peer that leaves takes its route with it', async () => {
    const host = new HostClient(`unix://${n1.host.socket}`, grpc.credentials.createInsecure());
    try {
      const routes = async () => (await inHost(n1.host, 'ip', 'route', 'show', 'proto', '77')).trim();
      const before = await routes();
      assert.match(before, /198\.19\.2\.0\/24 via 198\.18\.0\.2/);
      const bad: Array<[object[], string]> = [
        [[{ name: 'x', address: 'nope', subnet: '198.19.2.0/24' }], 'peers[0].address'],
        [[{ name: 'x', address: '198.18.0.2', subnet: '198.19.2.7/24' }], 'peers[0].subnet'],
        [[{ name: 'x', address: '198.18.0.2', subnet: n1.host.subnet }], 'peers[0].subnet'],
        [[{ name: 'a', address: '198.18.0.2', subnet: '198.19.2.0/24' }, { name: 'b', address: '198.18.0.9', subnet: '198.19.2.0/24' }], 'peers[1].subnet'],
      ];
      for (const [peers, field] of bad) {
        await assert.rejects(unary(host, host.SetPeers, { peers }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field }));
      }
      assert.equal(await routes(), before);
      assert.deepEqual((await unary(host, host.SetPeers, { peers: [] })).routes, []);
      assert.equal(await routes(), '');
      const back = await unary(host, host.SetPeers, { peers: [{ name: 'n2', address: '198.18.0.2', subnet: '198.19.2.0/24' }] });
      assert.deepEqual(back.routes, ['198.19.2.0/24 via 198.18.0.2']);
    } finally {
      host.close();
    }
  });

  test('the allocator survives an agent killed with -9: no address is handed out twice afterwards', async () => {
    const before = (await unary(n1.ctrs, n1.ctrs.List, {})).containers.filter((c) => c.address !== '');
    assert.ok(before.length >= 2, 'containers from the tests above');
    n1.host = await labRestartAgent(dir, 'n1', 'SIGKILL');
    const after = (await unary(n1.ctrs, n1.ctrs.List, {})).containers.filter((c) => c.address !== '');
    assert.deepEqual(after.map((c) => [c.name, c.address, c.state]), before.map((c) => [c.name, c.address, 'running']));
    const fresh: string[] = [];
    for (let i = 0; i < 3; i++) fresh.push((await start(n1, `after${i}`, ['sleep', '3600'])).address);
    const all = [...after.map((c) => c.address), ...fresh];
    assert.equal(new Set(all).size, all.length, `an address is handed out twice: ${all.join(' ')}`);
    assert.match(await ncFrom(n1, `after0`, (await unary(n2.ctrs, n2.ctrs.Get, { name: 'srv2' })).container!.address, 7000), /from-srv2/);
  });
});
