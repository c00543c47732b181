// The controller's hosts over MemoryStore (LogStore for a restart), a real
// subnet pool, a fake clock and the fake agent gateway: registration and
// its subnet (kept, remembered, exhausted, released, never leaked by a
// failed commit), readiness from heartbeats, operator actions that involve
// workspaces (remove, drain), and peer lists that follow the cluster.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FakeAgentGateway } from '../../controller/agents/fake-gateway.js';
import { HostAdmin } from '../../controller/hosts/host-admin.js';
import { HostRegistry, hostKey, type HostRecord } from '../../controller/hosts/host-registry.js';
import { hostOf, PeerSync } from '../../controller/hosts/peer-sync.js';
import { probeHosts } from '../../controller/hosts/host-probe.js';
import { LogStore, MemoryStore, type Store, type StoreOp } from '../../controller/store/index.js';
import { SubnetPool } from '../../controller/subnets/subnet-pool.js';
import { WorkspaceService, workspaceKey } from '../../controller/workspaces/workspace-service.js';
import { LxrError } from '../../proto/shared/errors.js';
import type { RegisterHostRequest } from '../../proto/shared/controller-types.js';
import { tempDir } from '../helpers/tmp.js';
import { rejectsWith, throwsWith } from '../helpers/lxr-errors.js';

const GiB = 1024 ** 3;
const GRACE_MS = 15_000;



const reg = (name: string, over: Partial<RegisterHostRequest> = {}): RegisterHostRequest => ({
  name,
  address: `198.18.0.${Number(name.replace(/\D/g, '')) || 1}:7070`,
  cpus: 4,
  memoryBytes: 8 * GiB,
  architecture: 'amd64',
  ...over,
});

class Clock {
  t = Date.UTC(2024, 0, 1);
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

/** A store whose commits fail while `failing` is set (a full disk, a lost etcd quorum). */
class FlakyStore extends MemoryStore {
  failing = false;
  override async commit(ops: StoreOp[]): Promise<number> {
    if (this.failing) throw new LxrError('LXR_INTERNAL', 'the store could not write a commit: injected failure');
    return super.commit(ops);
  }
}

interface World {
  store: Store;
  pool: SubnetPool;
  clock: Clock;
  hosts: HostRegistry;
  events: string[];
}

function world(o: { store?: Store; pool?: SubnetPool; clock?: Clock } = {}): World {
  const store = o.store ?? new MemoryStore();
  const pool = o.pool ?? new SubnetPool('10.200.0.0/16', 24);
  const clock = o.clock ?? new Clock();
  const hosts = new HostRegistry({ store, subnets: pool, graceMs: GRACE_MS, now: clock.now });
  const events: string[] = [];
  hosts.on('changed', () => events.push('changed'));
  hosts.on('ready', (n: string) => events.push(`ready ${n}`));
  hosts.on('notready', (n: string) => events.push(`notready ${n}`));
  return { store, pool, clock, hosts, events };
}

describe('host registry: registration and subnets', () => {
  it('registering gives subnets in order, stores the record and emits changed', async () => {
    const w = world();
    const got: string[] = [];
    for (const n of ['n1', 'n2', 'n3']) got.push((await w.hosts.register(reg(n, { labels: { zone: 'a' } }))).subnet);
    assert.deepEqual(got, ['10.200.0.0/24', '10.200.1.0/24', '10.200.2.0/24']);
    assert.deepEqual(w.events, ['changed', 'changed', 'changed']);
    assert.deepEqual(w.hosts.names(), ['n1', 'n2', 'n3']);
    const stored = await w.store.get<HostRecord>(hostKey('n2'));
    assert.equal(stored?.value.subnet, '10.200.1.0/24');
    assert.equal(stored?.value.address, '198.18.0.2:7070');
    assert.deepEqual(stored?.value.labels, { zone: 'a' });
    assert.equal(stored?.value.registeredAt, new Date(w.clock.t).toISOString());
    assert.equal(w.pool.used, 3);
  });

  it('registering again keeps the subnet, the cordon and registeredAt; changed only when the address moves', async () => {
    const w = world();
    const first = await w.hosts.register(reg('n1'));
    await w.hosts.register(reg('n2'));
    await w.hosts.setCordoned('n1', true);
    w.events.length = 0;
    w.clock.advance(60_000);
    const again = await w.hosts.register(reg('n1', { cpus: 8 }));
    assert.equal(again.subnet, first.subnet);
    assert.equal(again.cordoned, true);
    assert.equal(again.cpus, 8);
    assert.equal(again.registeredAt, first.registeredAt);
    assert.deepEqual(w.events, []);
    const moved = await w.hosts.register(reg('n1', { address: '198.18.9.9:7070' }));
    assert.equal(moved.subnet, first.subnet);
    assert.deepEqual(w.events, ['changed']);
    assert.equal(w.pool.used, 2);
    // A remembered subnet does not move a registered host.
    assert.equal((await w.hosts.register(reg('n1', { subnet: '10.200.7.0/24' }))).subnet, first.subnet);
    assert.equal(w.pool.isUsed('10.200.7.0/24'), false);
  });

  it('after a controller restart (new registry and pool from the same store) subnets and cordons are kept, hosts NotReady until heard from', async () => {
    const dir = path.join(await tempDir('hosts'), 'store');
    const clock = new Clock();
    const store1 = await LogStore.open(dir);
    const w1 = world({ store: store1, clock });
    await w1.hosts.register(reg('n1'));
    await w1.hosts.register(reg('n2'));
    await w1.hosts.register(reg('n3'));
    await w1.hosts.remove('n2');
    await w1.hosts.setCordoned('n3', true);
    w1.hosts.heartbeat('n1', null);
    await store1.close();

    const store2 = await LogStore.open(dir);
    try {
      const w2 = world({ store: store2, clock });
      await w2.hosts.load();
      assert.deepEqual(w2.hosts.names(), ['n1', 'n3']);
      assert.equal(w2.pool.used, 2);
      assert.equal(w2.hosts.view('n1').state, 'NotReady');
      assert.equal(w2.hosts.view('n3').cordoned, true);
      assert.equal((await w2.hosts.register(reg('n1'))).subnet, '10.200.0.0/24');
      assert.equal((await w2.hosts.register(reg('n3'))).cordoned, true);
      assert.equal((await w2.hosts.register(reg('n3'))).subnet, '10.200.2.0/24');
      // The free subnet n2 had is handed out, never one a host still holds.
      assert.equal((await w2.hosts.register(reg('n4'))).subnet, '10.200.1.0/24');
      assert.equal((await w2.hosts.register(reg('n5'))).subnet, '10.200.3.0/24');
      assert.equal(w2.hosts.isReady('n1'), false);
      w2.hosts.heartbeat('n1', null);
      assert.equal(w2.hosts.isReady('n1'), true);
    } finally {
      await store2.close();
    }
  });

  it('a store holding one subnet for two hosts is refused at load', async () => {
    const store = new MemoryStore();
    const rec = (name: string): HostRecord => ({ name, address: '198.18.0.1:7070', metricsAddress: '', subnet: '10.200.0.0/24', cordoned: false, cpus: 1, memoryBytes: GiB, architecture: 'amd64', labels: {}, agentVersion: '', registeredAt: '' });
    await store.commit([
      { type: 'put', key: hostKey('n1'), value: rec('n1') },
      { type: 'put', key: hostKey('n2'), value: rec('n2') },
    ]);
    await rejectsWith(world({ store }).hosts.load(), 'LXR_INTERNAL', /n2 and another one hold the same subnet 10\.200\.0\.0\/24/);
  });

  it('a remembered subnet is honoured when free; another one is given when it is taken', async () => {
    const w = world();
    assert.equal((await w.hosts.register(reg('n1', { subnet: '10.200.9.0/24' }))).subnet, '10.200.9.0/24');
    assert.equal((await w.hosts.register(reg('n2', { subnet: '10.200.9.0/24' }))).subnet, '10.200.0.0/24');
    assert.equal((await w.hosts.register(reg('n3'))).subnet, '10.200.1.0/24');
    await rejectsWith(w.hosts.register(reg('n4', { subnet: '10.100.0.0/24' })), 'LXR_INVALID_ARGUMENT', /10\.100\.0\.0\/24 is not a \/24 subnet of 10\.200\.0\.0\/16/, 'subnet');
    assert.equal(w.hosts.record('n4'), undefined);
    assert.equal(w.pool.used, 3);
  });

  const bad: Array<[string, RegisterHostRequest, string, RegExp]> = [
    ['no name', reg('n1', { name: '' }), 'name', /required/],
    ['name not a DNS label', reg('n1', { name: 'Node_1' }), 'name', /"Node_1" is not a DNS label/],
    ['no address', reg('n1', { address: '' }), 'address', /"" is not HOST:PORT/],
    ['address without port', reg('n1', { address: '198.18.0.1' }), 'address', /is not HOST:PORT/],
    ['address with port 0', reg('n1', { address: '198.18.0.1:0' }), 'address', /is not HOST:PORT/],
    ['address with port 70000', reg('n1', { address: 'node1:70000' }), 'address', /is not HOST:PORT/],
    ['bad metrics address', reg('n1', { metricsAddress: 'x' }), 'metrics_address', /"x" is not HOST:PORT/],
    ['0 cpus', reg('n1', { cpus: 0 }), 'cpus', /at least 1, got 0/],
    ['fractional cpus', reg('n1', { cpus: 1.5 }), 'cpus', /whole number/],
    ['no memory', reg('n1', { memoryBytes: 0 }), 'memory_bytes', /positive number of bytes, got 0/],
    ['negative memory', reg('n1', { memoryBytes: -1 }), 'memory_bytes', /positive/],
    ['no architecture', reg('n1', { architecture: '' }), 'architecture', /required/],
  ];
  for (const [title, req, field, pattern] of bad) {
    it(`registration refused: ${title}`, async () => {
      const w = world();
      await rejectsWith(w.hosts.register(req), 'LXR_INVALID_ARGUMENT', new RegExp(`invalid argument ${field}: .*${pattern.source}`), field);
      assert.deepEqual(w.hosts.names(), []);
      assert.equal(w.pool.used, 0);
      assert.deepEqual(await w.store.list('hosts/'), []);
      assert.deepEqual(w.events, []);
    });
  }

  it('addresses of every accepted shape', async () => {
    const w = world();
    for (const [i, a] of ['198.18.0.1:7070', 'node-1.example.org:1', '[fd00::1]:65535', 'localhost:7070'].entries()) {
      assert.equal((await w.hosts.register(reg(`n${i + 1}`, { address: a }))).address, a);
    }
    assert.deepEqual(['198.18.0.1:7070', '[fd00::1]:7070', 'node:1'].map(hostOf), ['198.18.0.1', 'fd00::1', 'node']);
  });

  it('an exhausted pool refuses the next host with LXR_SUBNET_EXHAUSTED naming the pool and records nothing of it', async () => {
    const w = world({ pool: new SubnetPool('10.200.0.0/23', 24) });
    await w.hosts.register(reg('n1'));
    await w.hosts.register(reg('n2'));
    w.events.length = 0;
    const revision = w.store.revision;
    await rejectsWith(w.hosts.register(reg('n3')), 'LXR_SUBNET_EXHAUSTED', /pool 10\.200\.0\.0\/23/);
    assert.deepEqual(w.hosts.names(), ['n1', 'n2']);
    assert.equal(w.hosts.record('n3'), undefined);
    assert.equal(await w.store.get(hostKey('n3')), undefined);
    assert.equal(w.store.revision, revision);
    assert.deepEqual(w.events, []);
    throwsWith(() => w.hosts.heartbeat('n3', null), 'LXR_NOT_FOUND', /host "n3" not found/);
    // Registered hosts still register again.
    assert.equal((await w.hosts.register(reg('n2'))).subnet, '10.200.1.0/24');
  });

  it('remove releases the subnet: the next host gets it; unknown hosts are NOT_FOUND', async () => {
    const w = world();
    await w.hosts.register(reg('n1'));
    await w.hosts.register(reg('n2'));
    await w.hosts.register(reg('n3'));
    w.hosts.heartbeat('n2', null);
    w.events.length = 0;
    await w.hosts.remove('n2');
    assert.deepEqual(w.events, ['changed']);
    assert.deepEqual(w.hosts.names(), ['n1', 'n3']);
    assert.equal(await w.store.get(hostKey('n2')), undefined);
    assert.equal(w.pool.isUsed('10.200.1.0/24'), false);
    assert.equal(w.hosts.isReady('n2'), false);
    assert.equal((await w.hosts.register(reg('n4'))).subnet, '10.200.1.0/24');
    await rejectsWith(w.hosts.remove('n2'), 'LXR_NOT_FOUND', /host "n2" not found/);
    await rejectsWith(w.hosts.setCordoned('n2', true), 'LXR_NOT_FOUND', /host "n2" not found/);
    throwsWith(() => w.hosts.view('n2'), 'LXR_NOT_FOUND', /host "n2" not found/);
  });

  it('a failing store commit leaves no subnet taken and no host recorded', async () => {
    const store = new FlakyStore();
    const w = world({ store });
    store.failing = true;
    await rejectsWith(w.hosts.register(reg('n1')), 'LXR_INTERNAL', /injected failure/);
    await rejectsWith(w.hosts.register(reg('n2', { subnet: '10.200.5.0/24' })), 'LXR_INTERNAL', /injected failure/);
    assert.equal(w.pool.used, 0);
    assert.deepEqual(w.hosts.names(), []);
    assert.deepEqual(w.events, []);
    store.failing = false;
    assert.equal((await w.hosts.register(reg('n1'))).subnet, '10.200.0.0/24');
    assert.equal((await w.hosts.register(reg('n2', { subnet: '10.200.5.0/24' }))).subnet, '10.200.5.0/24');
    // A failed registration of a known host keeps its subnet.
    store.failing = true;
    await rejectsWith(w.hosts.register(reg('n1', { cpus: 8 })), 'LXR_INTERNAL', /injected failure/);
    await rejectsWith(w.hosts.remove('n1'), 'LXR_INTERNAL', /injected failure/);
    store.failing = false;
    assert.equal(w.pool.isUsed('10.200.0.0/24'), true);
    assert.equal(w.hosts.record('n1')?.cpus, 4);
    assert.equal(w.pool.used, 2);
  });
});

describe('host registry: readiness', () => {
  it('NotReady until the first heartbeat, Ready after, NotReady after the grace period, Ready again with the next heartbeat', async () => {
    const w = world();
    await w.hosts.register(reg('n1'));
    await w.hosts.register(reg('n2'));
    w.events.length = 0;
    assert.equal(w.hosts.view('n1').state, 'NotReady');
    assert.equal(w.hosts.view('n1').lastHeartbeat, '');
    w.hosts.tick();
    assert.deepEqual(w.events, []);

    w.hosts.heartbeat('n1', { containers: 3, running: 2 });
    w.hosts.heartbeat('n2', null);
    assert.deepEqual(w.events, ['ready n1', 'ready n2']);
    const v = w.hosts.view('n1');
    assert.equal(v.state, 'Ready');
    assert.equal(v.lastHeartbeat, new Date(w.clock.t).toISOString());
    assert.deepEqual(v.usage, { containers: 3, running: 2, reservedCpus: 0, reservedMemoryBytes: 0, load1: 0, memoryUsedBytes: 0 });
    assert.equal(w.hosts.view('n2').usage, null);

    // Exactly the grace period is still Ready; a heartbeat from n2 keeps it Ready.
    w.clock.advance(GRACE_MS);
    w.hosts.heartbeat('n2', null);
    w.hosts.tick();
    assert.deepEqual(w.events, ['ready n1', 'ready n2']);
    w.clock.advance(1);
    w.hosts.tick();
    assert.deepEqual(w.events.slice(2), ['notready n1']);
    assert.equal(w.hosts.view('n1').state, 'NotReady');
    assert.equal(w.hosts.isReady('n2'), true);
    assert.equal(w.hosts.silentFor('n1'), GRACE_MS + 1);
    assert.equal(w.hosts.silentFor('n2'), 0);
    // The last usage is kept while NotReady; a second tick says nothing new.
    assert.equal(w.hosts.view('n1').usage?.containers, 3);
    w.clock.advance(5000);
    w.hosts.tick();
    assert.deepEqual(w.events.slice(2), ['notready n1']);
    assert.equal(w.hosts.silentFor('n1'), GRACE_MS + 5001);

    w.hosts.heartbeat('n1', null);
    assert.deepEqual(w.events.slice(2), ['notready n1', 'ready n1']);
    assert.equal(w.hosts.view('n1').state, 'Ready');
    assert.equal(w.hosts.silentFor('n1'), 0);
    // Heartbeats of a Ready host say nothing.
    w.hosts.heartbeat('n1', null);
    assert.equal(w.events.length, 4);
  });

  it('a heartbeat of an unknown host is NOT_FOUND (the agent registers again)', async () => {
    const w = world();
    await w.hosts.register(reg('n1'));
    throwsWith(() => w.hosts.heartbeat('n9', null), 'LXR_NOT_FOUND', /host "n9" not found/);
    throwsWith(() => w.hosts.heartbeat(undefined, null), 'LXR_NOT_FOUND', /host "" not found/);
    assert.deepEqual(w.events, ['changed']);
  });

  it('registering again does not make a NotReady host Ready, nor a Ready one NotReady', async () => {
    const w = world();
    await w.hosts.register(reg('n1'));
    await w.hosts.register(reg('n1'));
    assert.equal(w.hosts.isReady('n1'), false);
    w.hosts.heartbeat('n1', null);
    await w.hosts.register(reg('n1'));
    assert.equal(w.hosts.isReady('n1'), true);
  });
});

// ------------------------------------------------- with workspaces and agents

interface Cluster extends World {
  gateway: FakeAgentGateway;
  workspaces: WorkspaceService;
  admin: HostAdmin;
}

async function cluster(names: string[]): Promise<Cluster> {
  const w = world();
  const gateway = new FakeAgentGateway();
  const workspaces = new WorkspaceService({ store: w.store, hosts: w.hosts, gateway, clusterId: 'c1', now: w.clock.now });
  for (const n of names) {
    await w.hosts.register(reg(n));
    w.hosts.heartbeat(n, null);
  }
  return { ...w, gateway, workspaces, admin: new HostAdmin(w.hosts, workspaces) };
}

async function running(c: Cluster, name: string, host: string): Promise<void> {
  await c.workspaces.create({ name, image: 'alpine', host, cpus: 1 });
  await c.workspaces.kick(name);
  assert.equal(c.workspaces.get(name).state, 'Running');
}

describe('host admin: remove and drain', () => {
  it('remove is refused while workspaces are placed there, naming them; force forgets them', async () => {
    const c = await cluster(['n1', 'n2']);
    await running(c, 'ws-a', 'n1');
    await running(c, 'ws-b', 'n1');
    await running(c, 'ws-c', 'n2');
    await rejectsWith(c.admin.remove('n1', false), 'LXR_ILLEGAL_STATE', /host n1 still has workspaces: ws-a, ws-b/);
    assert.deepEqual(c.hosts.names(), ['n1', 'n2']);
    assert.equal(c.workspaces.get('ws-a').state, 'Running');
    assert.deepEqual(c.admin.view('n1'), { ...c.hosts.view('n1'), reservedCpus: 2, reservedMemoryBytes: 0, workspaces: 2 });

    await c.admin.remove('n1', true);
    assert.deepEqual(c.hosts.names(), ['n2']);
    assert.deepEqual(c.workspaces.list().map((x) => x.spec!.name), ['ws-c']);
    assert.equal(await c.store.get(workspaceKey('ws-a')), undefined);
    assert.equal(await c.store.get(hostKey('n1')), undefined);
    assert.equal(c.pool.isUsed('10.200.0.0/24'), false);
    await rejectsWith(c.admin.remove('n1', true), 'LXR_NOT_FOUND', /host "n1" not found/);
    // A host without workspaces goes without force.
    await c.workspaces.delete('ws-c');
    await c.admin.remove('n2', false);
    assert.deepEqual(c.hosts.names(), []);
  });

  it('drain cordons the host and stops its running workspaces; nothing new is placed there', async () => {
    const c = await cluster(['n1', 'n2']);
    await running(c, 'ws-a', 'n1');
    await running(c, 'ws-b', 'n1');
    await running(c, 'ws-c', 'n2');
    await c.workspaces.stop('ws-b');
    c.gateway.calls.length = 0;
    const { host, stopped } = await c.admin.drain('n1');
    assert.deepEqual(stopped, ['ws-a']);
    assert.equal(host.cordoned, true);
    assert.equal((await c.store.get<HostRecord>(hostKey('n1')))?.value.cordoned, true);
    assert.deepEqual(c.gateway.calls.map((x) => `${x.op} ${x.host} ${x.name}`), ['stop n1 ws-a']);
    assert.equal(c.workspaces.get('ws-a').state, 'Stopped');
    assert.equal(c.workspaces.get('ws-c').state, 'Running');
    assert.equal(c.gateway.container('n1', 'ws-a')?.state, 'stopped');
    // Stopped workspaces keep their place (their files are there).
    assert.equal(c.admin.view('n1').workspaces, 2);
    const { workspace } = await c.workspaces.create({ name: 'ws-d', image: 'alpine' });
    assert.equal(workspace.host, 'n2');
    await rejectsWith(c.workspaces.create({ name: 'ws-e', image: 'alpine', host: 'n1' }), 'LXR_HOST_UNSCHEDULABLE', /host n1 cannot take the workspace: cordoned/);
    await c.workspaces.idle();
    // Uncordoned, it takes workspaces again.
    assert.equal((await c.admin.cordon('n1', false)).cordoned, false);
    assert.equal((await c.workspaces.create({ name: 'ws-e', image: 'alpine', host: 'n1' })).workspace.host, 'n1');
    await c.workspaces.idle();
  });

  it('a drain that cannot stop a workspace says which, and still cordons', async () => {
    const c = await cluster(['n1']);
    await running(c, 'ws-a', 'n1');
    c.gateway.down('n1');
    await rejectsWith(c.admin.drain('n1'), 'LXR_UNAVAILABLE', /host n1 is cordoned, but 1 workspace\(s\) could not be stopped: ws-a: host n1 is unreachable/);
    assert.equal(c.hosts.record('n1')?.cordoned, true);
    assert.equal(c.workspaces.get('ws-a').state, 'Running');
  });
});

describe('peer sync', () => {
  async function settle(p: PeerSync): Promise<void> {
    // One round at a time: a change during a round is picked up by the next.
    for (let i = 0; i < 5 && !p.current; i++) await p.sync();
  }

  /** n1 and n2 registered and Ready, their lists pushed. */
  async function readyPair(): Promise<{ w: World; gateway: FakeAgentGateway; peers: PeerSync }> {
    const w = world();
    const gateway = new FakeAgentGateway();
    const peers = new PeerSync(w.hosts, gateway);
    for (const n of ['n1', 'n2']) {
      await w.hosts.register(reg(n));
      w.hosts.heartbeat(n, null);
    }
    await settle(peers);
    return { w, gateway, peers };
  }

  it('every Ready host gets the list of the others (address without port, subnet)', async () => {
    const w = world();
    const gateway = new FakeAgentGateway();
    const peers = new PeerSync(w.hosts, gateway);
    await w.hosts.register(reg('n1'));
    await w.hosts.register(reg('n2', { address: '[fd00::2]:7070' }));
    await w.hosts.register(reg('n3'));
    await settle(peers);
    // Nobody is Ready yet: nothing is pushed.
    assert.deepEqual(gateway.callsOf('setPeers'), []);
    assert.equal(peers.current, true);
    for (const n of ['n1', 'n2', 'n3']) w.hosts.heartbeat(n, null);
    await settle(peers);
    assert.equal(peers.current, true);
    assert.deepEqual(gateway.peers.get('n1'), [
      { name: 'n2', address: 'fd00::2', subnet: '10.200.1.0/24' },
      { name: 'n3', address: '198.18.0.3', subnet: '10.200.2.0/24' },
    ]);
    assert.deepEqual(gateway.peers.get('n2'), [
      { name: 'n1', address: '198.18.0.1', subnet: '10.200.0.0/24' },
      { name: 'n3', address: '198.18.0.3', subnet: '10.200.2.0/24' },
    ]);
    assert.deepEqual(gateway.peers.get('n3')?.map((p) => p.name), ['n1', 'n2']);
    // An address change or a removal reaches everyone.
    await w.hosts.register(reg('n3', { address: '198.18.0.33:7070' }));
    await w.hosts.remove('n2');
    await settle(peers);
    assert.deepEqual(gateway.peers.get('n1'), [{ name: 'n3', address: '198.18.0.33', subnet: '10.200.2.0/24' }]);
    assert.deepEqual(gateway.peers.get('n3'), [{ name: 'n1', address: '198.18.0.1', subnet: '10.200.0.0/24' }]);
    // Nothing is pushed again when nothing changed.
    const calls = gateway.calls.length;
    await peers.sync();
    assert.equal(gateway.calls.length, calls);
  });

  it('every host is told the LXR endpoints its containers may not reach: agents\' API and metrics, the controller\'s', async () => {
    const w = world();
    const gateway = new FakeAgentGateway();
    const peers = new PeerSync(w.hosts, gateway);
    await w.hosts.register(reg('n1', { metricsAddress: '198.18.0.1:9100' }));
    await w.hosts.register(reg('n2', { address: '[fd00::2]:7070', metricsAddress: '0.0.0.0:9100' }));
    for (const n of ['n1', 'n2']) w.hosts.heartbeat(n, null);
    await settle(peers);
    const last = (h: string) => gateway.callsOf('setPeers', h).at(-1)?.protectedEndpoints;
    // IPv6 and unspecified addresses name no endpoint an IPv4 rule can hold.
    assert.deepEqual(last('n1'), ['198.18.0.1:7070', '198.18.0.1:9100']);
    assert.deepEqual(last('n2'), ['198.18.0.1:7070', '198.18.0.1:9100']);
    peers.setControllerEndpoints(['198.18.0.254:7000', '198.18.0.254:7001', '0.0.0.0:7002']);
    await settle(peers);
    assert.deepEqual(last('n1'), ['198.18.0.1:7070', '198.18.0.1:9100', '198.18.0.254:7000', '198.18.0.254:7001']);
    assert.deepEqual(last('n2'), last('n1'));
  });

  it('a host that was down gets the list once it is Ready again', async () => {
    const { w, gateway, peers } = await readyPair();
    gateway.down('n2');
    await w.hosts.register(reg('n3'));
    w.hosts.heartbeat('n3', null);
    await settle(peers);
    assert.equal(peers.current, false);
    assert.deepEqual(gateway.peers.get('n1')?.map((p) => p.name), ['n2', 'n3']);
    assert.deepEqual(gateway.peers.get('n2')?.map((p) => p.name), ['n1']);
    assert.ok(gateway.callsOf('setPeers', 'n2').length >= 2, 'the down host was tried');

    // It goes NotReady: the others are current.
    w.clock.advance(GRACE_MS + 1);
    w.hosts.heartbeat('n1', null);
    w.hosts.heartbeat('n3', null);
    w.hosts.tick();
    assert.equal(w.hosts.isReady('n2'), false);
    assert.equal(peers.current, true);
    const tried = gateway.callsOf('setPeers', 'n2').length;
    await settle(peers);
    assert.equal(gateway.callsOf('setPeers', 'n2').length, tried, 'a NotReady host is not called');

    // Back: its first heartbeat brings the list.
    gateway.up('n2');
    w.hosts.heartbeat('n2', null);
    await settle(peers);
    assert.equal(peers.current, true);
    assert.deepEqual(gateway.peers.get('n2'), [
      { name: 'n1', address: '198.18.0.1', subnet: '10.200.0.0/24' },
      { name: 'n3', address: '198.18.0.3', subnet: '10.200.2.0/24' },
    ]);
  });

  it('a host that restarts (NotReady, then Ready) is given the list again even though it did not change', async () => {
    const { w, gateway, peers } = await readyPair();
    const before = gateway.callsOf('setPeers', 'n1').length;
    w.clock.advance(GRACE_MS + 1);
    w.hosts.heartbeat('n2', null);
    w.hosts.tick();
    w.hosts.heartbeat('n1', null);
    await settle(peers);
    assert.equal(gateway.callsOf('setPeers', 'n1').length, before + 1);
    assert.equal(gateway.callsOf('setPeers', 'n2').length, 1);
  });
});

describe('host probe after a controller restart', () => {
  it('hosts whose agent answers are Ready at once; the others wait for their heartbeat', async () => {
    const store = new MemoryStore();
    const first = world({ store });
    for (const n of ['n1', 'n2', 'n3']) await first.hosts.register(reg(n));
    // The controller starts again over the same store: it knows the hosts, none is Ready.
    const w = world({ store, pool: new SubnetPool('10.200.0.0/16', 24) });
    await w.hosts.load();
    assert.deepEqual(w.hosts.names().map((n) => w.hosts.isReady(n)), [false, false, false]);
    const gateway = new FakeAgentGateway();
    gateway.down('n2');
    assert.deepEqual(await probeHosts(w.hosts, gateway), ['n1', 'n3']);
    assert.deepEqual(w.hosts.names().map((n) => [n, w.hosts.isReady(n)]), [['n1', true], ['n2', false], ['n3', true]]);
    assert.deepEqual(w.events.filter((e) => e.startsWith('ready')), ['ready n1', 'ready n3']);
    assert.deepEqual(gateway.callsOf('list').map((c) => c.host).sort(), ['n1', 'n2', 'n3']);
    // Ready hosts are not asked again.
    gateway.up('n2');
    assert.deepEqual(await probeHosts(w.hosts, gateway), ['n2']);
    assert.equal(gateway.callsOf('list').length, 4);
  });
});
