// The controller as issue 6 asks to show it, in a lab of three hosts whose
// agents join a real lxr-controller: hosts register with their own subnets
// and learn their peers; workspaces spread across hosts; a pinned create
// lands where it was pinned (and an unknown or cordoned pin is refused with
// the reason); exec through the controller into a workspace on another host
// with the exact exit status, stdin and re-attach to the durable session;
// backpressure through the controller (256 MiB intact, a paused reader
// holds the controller's memory and the process);
// logs through the controller; an agent killed with -9 makes its host
// NotReady (workspaces Unknown) and Ready again when it is back, with its
// workspaces still running; a controller killed with -9 in the middle of a
// burst of creates finds, after a restart, every acknowledged workspace and
// no duplicate container on any host.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { labDown, labRestartAgent, labRestartController, labUp, type LabState } from '../../cli/lab/lab.js';
import { CLIENT_OPTIONS, ClusterExecClient, ClusterHostsClient, type ExecClient, ContainersClient, unary, WorkspacesClient, type ClusterHost, type Container, type LogsResponse, type Workspace } from '../../proto/shared/api.js';
import { agentTestSkip, importBusyboxOn, collect, grpcErr } from '../helpers/agent.js';
import { ExecStream, growthWhilePaused } from '../helpers/exec-stream.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const image = 'lab.example/lxr/busybox:v1';

describe('the controller in a three-host lab', { skip: agentTestSkip, timeout: 900_000 }, () => {
  let work: string;
  let dir: string;
  let lab: LabState;
  let hosts: ClusterHostsClient;
  let ws: WorkspacesClient;
  let exec: ExecClient;
  const reconnect = (): void => {
    for (const c of [hosts, ws, exec]) c?.close();
    const addr = `unix://${lab.controller!.socket}`;
    hosts = new ClusterHostsClient(addr, grpc.credentials.createInsecure(), CLIENT_OPTIONS);
    ws = new WorkspacesClient(addr, grpc.credentials.createInsecure(), CLIENT_OPTIONS);
    exec = new ClusterExecClient(addr, grpc.credentials.createInsecure(), CLIENT_OPTIONS);
  };
  const agentContainers = async (): Promise<Array<Container & { host: string }>> => {
    const out: Array<Container & { host: string }> = [];
    for (const h of lab.hosts) {
      const c = new ContainersClient(`unix://${h.socket}`, grpc.credentials.createInsecure());
      try {
        for (const ctr of (await unary(c, c.List, {})).containers) out.push({ ...ctr, host: h.name });
      } finally {
        c.close();
      }
    }
    return out;
  };
  const listHosts = async (): Promise<ClusterHost[]> => (await unary(hosts, hosts.List, {})).hosts;
  const until = async <T>(what: string, f: () => Promise<T | null | undefined | false>, ms = 30_000): Promise<T> => {
    for (let t = 0; ; t += 200) {
      const v = await f().catch(() => null);
      if (v) return v;
      if (t > ms) throw new Error(`timed out waiting for ${what}`);
      await sleep(200);
    }
  };
  const get = async (name: string): Promise<Workspace> => (await unary(ws, ws.Get, { name })).workspace!;
  const create = async (name: string, extra: object = {}): Promise<Workspace> =>
    (await unary(ws, ws.Create, { spec: { name, image, command: ['sleep', '3600'], ...extra }, wait: true }, { deadline: Date.now() + 120_000 })).workspace!;
  const remove = (name: string) => unary(ws, ws.Delete, { name }).catch(() => {});

  before(async () => {
    work = await ownedTempDir('ctl');
    dir = path.join(work, 'lab');
    lab = await labUp({ name: uniqueId('c').toLowerCase().slice(0, 20), dir, hosts: 3, controller: true });
    reconnect();
    await importBusyboxOn(work, lab.hosts.map((h) => h.socket), image);
  });

  after(async () => {
    for (const c of [hosts, ws, exec]) c?.close();
    if (dir) {
      const problems = await labDown(dir);
      assert.deepEqual(problems, []);
    }
    if (work) await run('rm', ['-rf', work]);
  });

  test('hosts register Ready, each with its own subnet of the pool, and learn their peers', async () => {
    const hs = await listHosts();
    assert.deepEqual(hs.map((h) => [h.name, h.state]), [['n1', 'Ready'], ['n2', 'Ready'], ['n3', 'Ready']]);
    const subnets = hs.map((h) => h.subnet);
    assert.equal(new Set(subnets).size, 3, `distinct subnets: ${subnets.join(' ')}`);
    for (const s of subnets) assert.match(s, /^198\.19\.\d+\.0\/24$/);
    // Every agent got a route to each other host's subnet via its address.
    for (const h of lab.hosts) {
      const routes = await until(`routes on ${h.name}`, async () => {
        const out = (await run('nsenter', ['-t', String(h.holder.pid), '-n', 'ip', 'route', 'show', 'proto', '77'])).stdout;
        return out.trim().split('\n').length === 2 ? out : null;
      });
      for (const p of hs.filter((x) => x.name !== h.name)) assert.match(routes, new RegExp(`${p.subnet.replace(/\./g, '\\.')} via ${p.address.replace(/:\d+$/, '').replace(/\./g, '\\.')}`));
    }
  });

  test('workspaces spread across the hosts; a pinned one lands where pinned; bad pins are refused with the reason', async () => {
    const names = ['sp1', 'sp2', 'sp3', 'sp4', 'sp5', 'sp6'];
    try {
      for (const n of names) await create(n);
      const placed = await Promise.all(names.map(get));
      for (const w of placed) assert.equal(w.state, 'Running', `${w.spec!.name}: ${w.reason}`);
      const per = new Map<string, number>();
      for (const w of placed) per.set(w.host, (per.get(w.host) ?? 0) + 1);
      assert.deepEqual([...per.values()], [2, 2, 2], `placement: ${JSON.stringify([...per])}`);
      // Each one runs on the host the controller says, with an address of that host's subnet.
      const ctrs = await agentContainers();
      const subnets = new Map((await listHosts()).map((h) => [h.name, h.subnet.replace(/\.0\/24$/, '.')]));
      for (const w of placed) {
        const c = ctrs.filter((x) => x.name === w.spec!.name);
        assert.equal(c.length, 1);
        assert.equal(c[0]!.host, w.host);
        assert.equal(c[0]!.state, 'running');
        assert.ok(w.address.startsWith(subnets.get(w.host)!), `${w.address} in ${subnets.get(w.host)}`);
      }
      const pinned = await create('pin1', { host: 'n3' });
      assert.equal(pinned.host, 'n3');
      assert.equal(pinned.state, 'Running');
      await assert.rejects(create('pin2', { host: 'n9' }), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND', { message: /host "n9"/ }));
      await unary(hosts, hosts.Cordon, { name: 'n2' });
      try {
        await assert.rejects(create('pin3', { host: 'n2' }), grpcErr(grpc.status.FAILED_PRECONDITION, 'LXR_HOST_UNSCHEDULABLE', { message: /n2.*cordoned/ }));
        await assert.rejects(create('big', { cpus: 1000 }), grpcErr(grpc.status.RESOURCE_EXHAUSTED, 'LXR_NO_HOST_FITS', { message: /n1: .*cpu.*n2: .*cordoned.*n3: /s }));
      } finally {
        await unary(hosts, hosts.Uncordon, { name: 'n2' });
      }
      // Nothing was recorded for refused creates.
      const all = (await unary(ws, ws.List, {})).workspaces.map((w) => w.spec!.name);
      assert.deepEqual(all.filter((n) => ['pin2', 'pin3', 'big'].includes(n)), []);
      // A retried create returns the same workspace; the same name with another spec is refused.
      const again = await unary(ws, ws.Create, { spec: { name: 'pin1', image, command: ['sleep', '3600'], host: 'n3' } });
      assert.equal(again.created, false);
      assert.equal(again.workspace!.uid, pinned.uid);
      await assert.rejects(create('pin1', { host: 'n1' }), grpcErr(grpc.status.ALREADY_EXISTS, 'LXR_ALREADY_EXISTS'));
    } finally {
      for (const n of [...names, 'pin1']) await remove(n);
    }
    assert.deepEqual((await agentContainers()).map((c) => c.name), []);
  });

  test('exec through the controller into a workspace on another host: output, stdin, exit status, re-attach', async () => {
    const w = await create('ex1', { host: 'n2' });
    try {
      const r = await ExecStream.start(exec, { container: 'ex1', args: ['sh', '-c', 'hostname; echo oops >&2; exit 7'] }).done;
      assert.equal(r.stdout.toString(), 'ex1\n');
      assert.equal(r.stderr.toString(), 'oops\n');
      assert.equal(r.exit?.code, 7);
      assert.match(r.sessionId, /^ex1\//);
      const cat = ExecStream.start(exec, { container: 'ex1', args: ['cat'] });
      cat.call.write({ stdin: Buffer.from('through the controller\n') });
      cat.call.write({ closeStdin: true });
      const c = await cat.done;
      assert.equal(c.stdout.toString(), 'through the controller\n');
      assert.equal(c.exit?.code, 0);
      // A session outlives its client: attach again by the controller's id, from an offset.
      const first = ExecStream.start(exec, { container: 'ex1', args: ['sh', '-c', 'echo one; read x; echo two'] });
      const id = await first.session;
      await first.waitStdout((s) => s === 'one\n');
      first.detach();
      const again = ExecStream.attach(exec, id, 4);
      again.input('\n');
      const a = await again.done;
      assert.equal(a.stdout.toString(), 'two\n');
      assert.equal(a.exit?.code, 0);
      const sessions = (await unary(ws, ws.ListSessions, { container: 'ex1' })).sessions;
      assert.ok(sessions.some((s) => s.id === id), `sessions: ${sessions.map((s) => s.id).join(' ')}`);
      await assert.rejects(ExecStream.attach(exec, 'nonsense').done, grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT'));
      await assert.rejects(ExecStream.start(exec, { container: 'nope', args: ['true'] }).done, grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND'));
      // Logs of the workspace, from its host.
      await create('lg1', { host: 'n3', command: ['sh', '-c', 'echo hello from lg1; sleep 3600'] });
      const lines = await until('the log line', async () => {
        const l = (await collect(ws.Logs({ name: 'lg1' }))) as LogsResponse[];
        return l.length ? l : null;
      });
      assert.equal(lines[0]!.line.toString(), 'hello from lg1');
      assert.equal(w.host, 'n2');
    } finally {
      await remove('ex1');
      await remove('lg1');
    }
  });

  test('exec through the controller has backpressure: 256 MiB arrive intact, and a paused reader holds the controller and the process', async () => {
    await create('bp1', { host: 'n3' });
    try {
      // Intact: the checksum of what arrives equals the one computed in the container.
      const big = ExecStream.start(exec, { container: 'bp1', args: ['sh', '-c', 'mkfifo /tmp/f && { md5sum </tmp/f >&2 & head -c 268435456 /dev/urandom | tee /tmp/f; wait; }'] });
      const hash = createHash('md5');
      let n = 0;
      let sum = '';
      big.onOutput = (stream, data) => {
        if (stream === 'stdout') {
          hash.update(data);
          n += data.length;
        } else sum += data.toString();
      };
      const r = await big.done;
      assert.equal(r.exit?.code, 0);
      assert.equal(n, 256 << 20);
      assert.equal(sum.split(' ')[0], hash.digest('hex'));
      // A paused reader: the controller does not buffer, and the process waits.
      const s = ExecStream.start(exec, { container: 'bp1', args: ['head', '-c', String(512 << 20), '/dev/zero'] });
      let got = 0;
      s.onOutput = (_stream, data) => {
        got += data.length;
      };
      const id = await s.session;
      const grown = await growthWhilePaused(s, lab.controller!.proc.pid);
      const mine = (await unary(ws, ws.ListSessions, { container: 'bp1' })).sessions.find((x) => x.id === id);
      assert.equal(mine?.state, 'running', 'the process finished while nobody read');
      assert.ok(grown < 64 << 20, `controller RSS grew by ${(grown / 1048576).toFixed(1)} MiB while the reader was paused`);
      s.call.resume();
      const done = await s.done;
      assert.equal(done.exit?.code, 0);
      assert.equal(got, 512 << 20);
    } finally {
      await remove('bp1');
    }
  });

  test('containers reach no LXR server: not their agent (by host address or gateway), no other agent, not the controller', async () => {
    const w = await create('guard', { host: 'n1' });
    try {
      const gateway = w.address.replace(/\.\d+$/, '.1');
      const n1 = lab.hosts[0]!;
      const targets = [
        ['198.18.0.1', '7070'], // its own agent's API
        [gateway, '9100'], // its own agent's metrics, through the gateway
        ['198.18.0.1', '9100'],
        ['198.18.0.2', '7070'], // another host's agent
        ['198.18.0.2', '9100'],
        ['198.18.0.254', '7000'], // the controller's API, metrics and web (HTTPS) ports
        ['198.18.0.254', '7001'],
        ['198.18.0.254', '7443'],
      ] as const;
      // The protected endpoints reach every agent with the peer list (pushed after registration).
      await until('the protection in place on n1', async () => {
        const rules = (await run('nsenter', ['-t', String(n1.holder.pid), '-n', 'iptables', '-w', '-S', 'LXR-PROTECT'])).stdout;
        return /198\.18\.0\.254\/32 .*--dport 7001/.test(rules) && /198\.18\.0\.254\/32 .*--dport 7443/.test(rules) && /198\.18\.0\.2\/32 .*--dport 7070/.test(rules);
      });
      for (const [ip, port] of targets) {
        // The server is there: from the host itself the connection is made...
        if (ip !== gateway) await run('nsenter', ['-t', String(n1.holder.pid), '-n', '/bin/busybox', 'sh', '-c', `/bin/busybox nc -w 2 ${ip} ${port} </dev/null`]);
        // ...and refused from inside the container.
        const r = await ExecStream.start(exec, { container: 'guard', args: ['sh', '-c', `nc -w 2 ${ip} ${port} </dev/null; echo "rc=$?"`] }).done;
        assert.match(r.stdout.toString(), /rc=1\n$/, `${ip}:${port} from a container: ${r.stdout}${r.stderr}`);
      }
      // Other containers stay reachable (another host's, through the pool).
      const peer = await create('guard2', { host: 'n2', command: ['sh', '-c', 'while :; do echo hi | nc -l -p 7070; done'] });
      let got = '';
      for (let i = 0; i < 30 && !got.includes('hi'); i++) got = (await ExecStream.start(exec, { container: 'guard', args: ['nc', '-w', '2', peer.address, '7070'] }).done).stdout.toString();
      assert.match(got, /hi/, 'a container on another host, even on port 7070');
    } finally {
      await remove('guard');
      await remove('guard2');
    }
  });

  test("a host whose agent is killed goes NotReady, its workspaces Unknown; back Ready with them running", async () => {
    const w = await create('nr1', { host: 'n1' });
    try {
      process.kill(lab.hosts[0]!.agent.pid, 'SIGKILL');
      await until('n1 NotReady', async () => (await listHosts()).find((h) => h.name === 'n1')?.state === 'NotReady');
      assert.equal((await get('nr1')).state, 'Unknown');
      await assert.rejects(ExecStream.start(exec, { container: 'nr1', args: ['true'] }).done, grpcErr(grpc.status.UNAVAILABLE, 'LXR_UNAVAILABLE', { message: /n1 is NotReady/ }));
      lab.hosts[0] = await labRestartAgent(dir, 'n1');
      await until('n1 Ready', async () => (await listHosts()).find((h) => h.name === 'n1')?.state === 'Ready');
      const back = await get('nr1');
      assert.equal(back.state, 'Running');
      assert.equal(back.uid, w.uid);
      const r = await ExecStream.start(exec, { container: 'nr1', args: ['echo', 'still here'] }).done;
      assert.equal(r.stdout.toString(), 'still here\n');
    } finally {
      await remove('nr1');
    }
  });

  test('a controller killed with -9 during a burst of creates keeps every acknowledged workspace, and makes no duplicates', async () => {
    const acked = new Set<string>();
    const names = Array.from({ length: 24 }, (_, i) => `burst${i}`);
    try {
      const attempts = names.map((name) =>
        unary(ws, ws.Create, { spec: { name, image, command: ['sleep', '3600'] } }, { deadline: Date.now() + 60_000 }).then(
          () => acked.add(name),
          () => {},
        ),
      );
      await until('some acknowledged creates', async () => acked.size >= 6, 60_000);
      const lc = await labRestartController(dir, 'SIGKILL');
      await Promise.all(attempts);
      reconnect();
      assert.ok(acked.size >= 6 && acked.size < names.length + 1);
      // Every acknowledged workspace is there after the restart, and all of them come to run.
      const listed = new Set((await unary(ws, ws.List, {})).workspaces.map((w) => w.spec!.name));
      for (const n of acked) assert.ok(listed.has(n), `acknowledged ${n} lost (log ${lc.log})`);
      await until('every recorded burst workspace Running', async () => {
        const l = (await unary(ws, ws.List, {})).workspaces.filter((w) => w.spec!.name.startsWith('burst'));
        return l.every((w) => w.state === 'Running') ? l : null;
      }, 120_000);
      // A retry of every create (what a client does after an error) makes no second workspace.
      for (const name of names) await unary(ws, ws.Create, { spec: { name, image, command: ['sleep', '3600'] }, wait: true }, { deadline: Date.now() + 120_000 });
      const ctrs = (await agentContainers()).filter((c) => c.name.startsWith('burst'));
      const count = new Map<string, number>();
      for (const c of ctrs) count.set(c.name, (count.get(c.name) ?? 0) + 1);
      assert.deepEqual([...count.entries()].filter(([, n]) => n !== 1), [], 'a workspace with more than one container');
      assert.deepEqual([...count.keys()].sort(), [...names].sort());
      const l = (await unary(ws, ws.List, {})).workspaces.filter((w) => w.spec!.name.startsWith('burst'));
      for (const w of l) assert.equal(ctrs.find((c) => c.name === w.spec!.name)!.host, w.host);
    } finally {
      for (const n of names) await remove(n);
    }
    await until('burst containers gone', async () => (await agentContainers()).length === 0);
  });
});
