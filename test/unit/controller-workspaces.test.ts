// Workspaces driven onto a fake agent gateway: a create recorded before it
// is answered and then made Running on the chosen host, idempotent and
// concurrent creates (never two containers, never an over-committed host),
// agent refusals and outages, adoption after a controller crash, what
// reconciling with an agent's report changes, start/stop/delete, and
// workspaces on NotReady hosts (Unknown, kept or rescheduled).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeAgentGateway, STOPPED_EXIT_CODE, type FakeCall } from '../../controller/agents/fake-gateway.js';
import { HostRegistry } from '../../controller/hosts/host-registry.js';
import { MemoryStore, type StoreOp } from '../../controller/store/index.js';
import { SubnetPool } from '../../controller/subnets/subnet-pool.js';
import { normalizeSpec } from '../../controller/workspaces/validate.js';
import { LABEL_CLUSTER, LABEL_UID, LABEL_WORKSPACE, WorkspaceService, workspaceKey, type WorkspaceRecord, type WorkspaceServiceOptions } from '../../controller/workspaces/workspace-service.js';
import { LxrError, type Reason } from '../../proto/shared/errors.js';
import type { WorkspaceSpec } from '../../proto/shared/controller-types.js';

const GiB = 1024 ** 3;
const GRACE_MS = 15_000;
const CLUSTER = 'c1';

async function rejectsWith(p: Promise<unknown>, reason: Reason, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LxrError, `not an LxrError: ${String(e)}`);
    assert.equal(e.reason, reason, e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

/** MemoryStore that keeps every commit, to see what was durable when. */
class RecordingStore extends MemoryStore {
  readonly commits: StoreOp[][] = [];
  override async commit(ops: StoreOp[]): Promise<number> {
    const rev = await super.commit(ops);
    this.commits.push(structuredClone(ops));
    return rev;
  }
}

class Clock {
  t = Date.UTC(2024, 0, 1);
  readonly now = (): number => this.t;
}

interface World {
  store: RecordingStore;
  clock: Clock;
  hosts: HostRegistry;
  gateway: FakeAgentGateway;
  ws: WorkspaceService;
  /** Moves the clock and sends heartbeats from the hosts named, then ticks. */
  pass(ms: number, beating: string[]): void;
  /** A second service on the same store, hosts and agents (a restarted controller). */
  restart(o?: Partial<WorkspaceServiceOptions>): Promise<WorkspaceService>;
}

async function world(o: { names?: string[]; cpus?: number; service?: Partial<WorkspaceServiceOptions> } = {}): Promise<World> {
  const store = new RecordingStore();
  const clock = new Clock();
  const hosts = new HostRegistry({ store, subnets: new SubnetPool('10.200.0.0/16', 24), graceMs: GRACE_MS, now: clock.now });
  const gateway = new FakeAgentGateway();
  const names = o.names ?? ['n1', 'n2', 'n3'];
  for (const [i, n] of names.entries()) {
    await hosts.register({ name: n, address: `198.18.0.${i + 1}:7070`, cpus: o.cpus ?? 4, memoryBytes: 8 * GiB, architecture: 'amd64' });
    hosts.heartbeat(n, null);
  }
  const make = async (over: Partial<WorkspaceServiceOptions> = {}): Promise<WorkspaceService> => {
    const s = new WorkspaceService({ store, hosts, gateway, clusterId: CLUSTER, now: clock.now, ...o.service, ...over });
    await s.load();
    return s;
  };
  return {
    store,
    clock,
    hosts,
    gateway,
    ws: await make(),
    pass(ms, beating) {
      clock.t += ms;
      for (const n of beating) hosts.heartbeat(n, null);
      hosts.tick();
    },
    restart: make,
  };
}

const spec = (name: string, over: Partial<WorkspaceSpec> = {}): Partial<WorkspaceSpec> => ({ name, image: 'alpine:3.20', cpus: 1, ...over });

/** Creates and waits for the drive to end. */
async function made(w: World, s: Partial<WorkspaceSpec>) {
  await w.ws.create(s);
  await w.ws.kick(s.name!);
  return w.ws.get(s.name!);
}

function seedRecord(name: string, host: string, state: WorkspaceRecord['state'], uid: string, over: Partial<WorkspaceRecord> = {}): WorkspaceRecord {
  return { spec: normalizeSpec(spec(name)), uid, host, state, reason: '', desired: 'running', address: '', createdAt: '2024-01-01T00:00:00.000Z', startedAt: '', exitCode: 0, ...over };
}

const ops = (w: World, op: FakeCall['op'], host?: string): string[] => w.gateway.callsOf(op, host).map((c) => `${c.host} ${c.name}`);

describe('workspace create', () => {
  it('is answered Pending once recorded, then runs on the chosen host with the controller labels and the uid as request id', async () => {
    const w = await world();
    const { workspace, created } = await w.ws.create(spec('ws1', { labels: { team: 'a' }, env: ['A=1'] }));
    assert.equal(created, true);
    assert.equal(workspace.state, 'Pending');
    assert.match(workspace.uid, /^[0-9a-f-]{36}$/);
    // The first commit of the workspace: Pending, and only if it did not exist.
    const first = w.store.commits.find((c) => c[0]?.key === workspaceKey('ws1'))!;
    assert.deepEqual(first.map((op) => [op.type, op.key, op.expect, (op as { value: WorkspaceRecord }).value.state]), [['put', 'workspaces/ws1', 0, 'Pending']]);

    await w.ws.kick('ws1');
    const got = w.ws.get('ws1');
    assert.equal(got.state, 'Running');
    assert.equal(got.host, 'n1');
    const ctr = w.gateway.container('n1', 'ws1')!;
    assert.equal(ctr.state, 'running');
    assert.deepEqual(ctr.labels, { team: 'a', [LABEL_WORKSPACE]: 'ws1', [LABEL_UID]: workspace.uid, [LABEL_CLUSTER]: CLUSTER });
    assert.equal(got.address, ctr.address);
    assert.equal(got.startedAt, ctr.startedAt);
    assert.deepEqual(w.gateway.callsOf('create').map((c) => [c.host, c.name, c.requestId]), [['n1', 'ws1', workspace.uid]]);
    assert.deepEqual(ops(w, 'start'), ['n1 ws1']);
    const stored = await w.store.get<WorkspaceRecord>(workspaceKey('ws1'));
    assert.equal(stored?.value.state, 'Running');
    assert.equal(stored?.revision, got.revision);
    // The states it went through, each durable.
    const states = w.store.commits.filter((c) => c[0]?.key === workspaceKey('ws1')).map((c) => (c[0] as { value: WorkspaceRecord }).value.state);
    assert.deepEqual(states, ['Pending', 'Creating', 'Running']);
  });

  it('with wait, answers once Running', async () => {
    const w = await world();
    const { workspace } = await w.ws.create(spec('ws1'), true);
    assert.equal(workspace.state, 'Running');
  });

  it('spreads workspaces over the hosts', async () => {
    const w = await world();
    const placed: string[] = [];
    for (let i = 1; i <= 6; i++) placed.push((await w.ws.create(spec(`ws${i}`))).workspace.host);
    await w.ws.idle();
    assert.deepEqual(placed, ['n1', 'n2', 'n3', 'n1', 'n2', 'n3']);
    for (const h of ['n1', 'n2', 'n3']) assert.equal(w.gateway.containers(h).length, 2);
    assert.deepEqual(
      w.ws.hostViews().map((h) => [h.name, h.reservedCpus, h.workspaces]),
      [
        ['n1', 2, 2],
        ['n2', 2, 2],
        ['n3', 2, 2],
      ],
    );
  });

  it('is idempotent: the same spec answers created:false with the same uid; another spec is LXR_ALREADY_EXISTS', async () => {
    const w = await world();
    const a = await w.ws.create(spec('ws1', { labels: { a: '1', b: '2' } }));
    await w.ws.idle();
    const b = await w.ws.create(spec('ws1', { labels: { b: '2', a: '1' } }));
    assert.equal(b.created, false);
    assert.equal(b.workspace.uid, a.workspace.uid);
    assert.equal(b.workspace.state, 'Running');
    await rejectsWith(w.ws.create(spec('ws1', { cpus: 2 })), 'LXR_ALREADY_EXISTS', /workspace "ws1" already exists/);
    await rejectsWith(w.ws.create(spec('ws1', { image: 'debian' })), 'LXR_ALREADY_EXISTS', /already exists/);
    await w.ws.idle();
    assert.equal(w.gateway.callsOf('create').length, 1);
  });

  it('concurrent identical creates make one workspace and one container', async () => {
    const w = await world();
    const rs = await Promise.all(Array.from({ length: 5 }, () => w.ws.create(spec('ws1'))));
    await w.ws.idle();
    assert.deepEqual(rs.map((r) => r.created).sort(), [false, false, false, false, true]);
    assert.equal(new Set(rs.map((r) => r.workspace.uid)).size, 1);
    assert.equal(w.ws.list().length, 1);
    assert.deepEqual(ops(w, 'create'), [`${rs[0]!.workspace.host} ws1`]);
    assert.equal(['n1', 'n2', 'n3'].flatMap((h) => w.gateway.containers(h)).length, 1);
    assert.equal(w.ws.get('ws1').state, 'Running');
    assert.equal(w.ws.hostViews().reduce((n, h) => n + h.reservedCpus, 0), 1);
  });

  it('concurrent different creates never over-commit: 3 hosts of 2 cpus take exactly 6 workspaces of 1 cpu', async () => {
    const w = await world({ cpus: 2 });
    const rs = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => w.ws.create(spec(`ws${i}`))));
    await w.ws.idle();
    const ok = rs.filter((r) => r.status === 'fulfilled');
    const refused = rs.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(ok.length, 6);
    assert.equal(refused.length, 4);
    for (const r of refused) {
      assert.ok(r.reason instanceof LxrError);
      assert.equal(r.reason.reason, 'LXR_NO_HOST_FITS', r.reason.message);
      assert.match(r.reason.message, /n1: needs 1 cpu, 0 of 2 unreserved; n2: .*; n3: /);
    }
    for (const h of ['n1', 'n2', 'n3']) assert.equal(w.gateway.containers(h).length, 2, h);
    assert.deepEqual(
      w.ws.hostViews().map((h) => h.reservedCpus),
      [2, 2, 2],
    );
    assert.equal(w.ws.list({ state: 'Running' }).length, 6);
    assert.equal((await w.store.list('workspaces/')).length, 6);
  });

  it('bad specs and unknown pinned hosts are refused before anything is recorded', async () => {
    const w = await world();
    await rejectsWith(w.ws.create(spec('Bad_Name')), 'LXR_INVALID_ARGUMENT', /spec\.name/);
    await rejectsWith(w.ws.create(spec('ws1', { host: 'n9' })), 'LXR_NOT_FOUND', /host "n9" not found/);
    await rejectsWith(w.ws.create(spec('ws1', { cpus: 5 })), 'LXR_NO_HOST_FITS', /needs 5 cpus/);
    assert.deepEqual(await w.store.list('workspaces/'), []);
    assert.deepEqual(w.ws.hostViews().map((h) => h.reservedCpus), [0, 0, 0]);
  });

  it('a create the agent refuses for good makes the workspace Failed with the reason, and frees its reservation', async () => {
    const w = await world();
    w.gateway.failNext('create', new LxrError('LXR_INVALID_SPEC', 'invalid config: image: manifest unknown'));
    const ws = await made(w, spec('ws1', { host: 'n2' }));
    assert.equal(ws.state, 'Failed');
    assert.match(ws.reason, /manifest unknown/);
    assert.equal((await w.store.get<WorkspaceRecord>(workspaceKey('ws1')))?.value.state, 'Failed');
    assert.equal(w.ws.hostViews().find((h) => h.name === 'n2')?.reservedCpus, 0);
    assert.deepEqual(w.gateway.containers('n2'), []);
  });

  it('a Failed workspace carries the catalogue reason as reasonCode, stored; it is cleared once it leaves Failed', async () => {
    const w = await world();
    w.gateway.failNext('create', new LxrError('LXR_NOT_FOUND', 'image "nope:v1" not found'));
    const ws = await made(w, spec('ws1', { host: 'n2', image: 'nope:v1' }));
    assert.equal(ws.state, 'Failed');
    assert.equal(ws.reasonCode, 'LXR_NOT_FOUND');
    assert.equal((await w.store.get<WorkspaceRecord>(workspaceKey('ws1')))?.value.reasonCode, 'LXR_NOT_FOUND');
    assert.equal((await w.restart()).get('ws1').reasonCode, 'LXR_NOT_FOUND');
    const started = await w.ws.start('ws1');
    assert.equal(started.state, 'Running');
    assert.equal(started.reasonCode, '');
    assert.equal((await w.store.get<WorkspaceRecord>(workspaceKey('ws1')))?.value.reasonCode, undefined);
    // A non-catalogue error (a bug, a host failure) is LXR_INTERNAL.
    w.gateway.failNext('create', new Error('boom') as LxrError);
    assert.equal((await made(w, spec('ws2', { host: 'n1' }))).reasonCode, 'LXR_INTERNAL');
  });

  it('records written before reasonCode existed are read with an empty one', async () => {
    const w = await world();
    await w.store.commit([{ type: 'put', key: workspaceKey('old'), value: seedRecord('old', 'n1', 'Failed', '11111111-2222-4333-8444-555555555555', { reason: 'it failed long ago' }), expect: 0 }]);
    const ws = (await w.restart()).get('old');
    assert.equal(ws.state, 'Failed');
    assert.equal(ws.reasonCode, '');
    assert.equal(ws.reason, 'it failed long ago');
  });

  it('an unreachable agent leaves the workspace Creating; it runs once the agent answers and the host is reconciled', async () => {
    const w = await world();
    w.gateway.down('n2');
    const ws = await made(w, spec('ws1', { host: 'n2' }));
    assert.equal(ws.state, 'Creating');
    assert.match(ws.reason, /^retrying: .*unreachable/, 'the record says why it is still Creating');
    assert.deepEqual(ops(w, 'create', 'n2'), ['n2 ws1']);
    // Reconciling while it is still down changes nothing.
    await assert.rejects(w.ws.reconcileHost('n2'), /unreachable/);
    assert.equal(w.ws.get('ws1').state, 'Creating');
    w.gateway.up('n2');
    await w.ws.reconcileHost('n2');
    await w.ws.idle();
    assert.equal(w.ws.get('ws1').state, 'Running');
    assert.equal(w.ws.get('ws1').reason, '', 'and the retry note goes once it runs');
    assert.equal(w.gateway.containers('n2').length, 1);
  });
});

describe('workspace adoption after a controller crash', () => {
  const UID = '11111111-2222-4333-8444-555555555555';
  const OTHER = '99999999-2222-4333-8444-555555555555';
  const cases: Array<{
    title: string;
    labels: Record<string, string>;
    requestId: string;
    state: 'created' | 'running';
    want: 'Running' | 'Failed';
    reason?: RegExp;
    creates: number;
    removes: number;
    starts: number;
  }> = [
    { title: 'made but not started: adopted (create with the same request id) and started', labels: { [LABEL_UID]: UID, [LABEL_CLUSTER]: CLUSTER, [LABEL_WORKSPACE]: 'ws1' }, requestId: UID, state: 'created', want: 'Running', creates: 1, removes: 0, starts: 1 },
    { title: 'running with the same uid label: adopted as it is', labels: { [LABEL_UID]: UID, [LABEL_CLUSTER]: CLUSTER, [LABEL_WORKSPACE]: 'ws1' }, requestId: '', state: 'running', want: 'Running', creates: 1, removes: 0, starts: 0 },
    { title: 'another uid of this cluster (an earlier workspace of the name): removed and replaced', labels: { [LABEL_UID]: OTHER, [LABEL_CLUSTER]: CLUSTER, [LABEL_WORKSPACE]: 'ws1' }, requestId: OTHER, state: 'running', want: 'Running', creates: 2, removes: 1, starts: 1 },
    { title: 'another cluster: Failed with a clear reason, left alone', labels: { [LABEL_UID]: OTHER, [LABEL_CLUSTER]: 'c2', [LABEL_WORKSPACE]: 'ws1' }, requestId: OTHER, state: 'running', want: 'Failed', reason: /host n1 has a container named ws1 that this cluster did not make/, creates: 1, removes: 0, starts: 0 },
    { title: 'a container nobody labelled: Failed, left alone', labels: {}, requestId: '', state: 'created', want: 'Failed', reason: /did not make/, creates: 1, removes: 0, starts: 0 },
  ];
  for (const c of cases) {
    it(c.title, async () => {
      const w = await world();
      await w.store.commit([{ type: 'put', key: workspaceKey('ws1'), value: seedRecord('ws1', 'n1', 'Creating', UID), expect: 0 }]);
      const before = w.gateway.seed('n1', { name: 'ws1', image: 'alpine:3.20', labels: c.labels, requestId: c.requestId, state: c.state });
      const ws = await w.restart();
      assert.equal(ws.get('ws1').state, 'Creating');
      await ws.kick('ws1');
      const got = ws.get('ws1');
      assert.equal(got.state, c.want, got.reason);
      if (c.reason) assert.match(got.reason, c.reason);
      assert.equal(w.gateway.callsOf('create').length, c.creates);
      assert.equal(w.gateway.callsOf('remove').length, c.removes);
      assert.equal(w.gateway.callsOf('start').length, c.starts);
      const ctrs = w.gateway.containers('n1');
      assert.equal(ctrs.length, 1);
      if (c.want === 'Running') {
        assert.equal(ctrs[0]!.labels[LABEL_UID], UID);
        assert.equal(ctrs[0]!.state, 'running');
        assert.equal(got.address, ctrs[0]!.address);
      } else assert.deepEqual(ctrs[0], before);
      assert.deepEqual(w.gateway.containers('n2'), []);
    });
  }

  it('a Pending record left by a crash is driven after load', async () => {
    const w = await world();
    await w.store.commit([{ type: 'put', key: workspaceKey('ws1'), value: seedRecord('ws1', 'n3', 'Pending', UID), expect: 0 }]);
    const ws = await w.restart();
    assert.deepEqual(ws.hostViews().map((h) => h.reservedCpus), [0, 0, 1]);
    await ws.reconcileHost('n3');
    await ws.idle();
    assert.equal(ws.get('ws1').state, 'Running');
    assert.equal(w.gateway.container('n3', 'ws1')?.labels[LABEL_UID], UID);
  });
});

describe('workspace reconcile', () => {
  it('a container that ended makes the workspace Stopped with its exit code and the reason', async () => {
    const w = await world();
    await made(w, spec('ws1', { host: 'n1' }));
    await made(w, spec('ws2', { host: 'n1' }));
    w.gateway.exit('n1', 'ws1', 3);
    w.gateway.exit('n1', 'ws2', 137, true);
    await w.ws.reconcileHost('n1');
    const a = w.ws.get('ws1');
    assert.equal(a.state, 'Stopped');
    assert.equal(a.exitCode, 3);
    assert.equal(a.desired, 'stopped');
    assert.equal(a.reason, 'its main process ended (exit code 3)');
    assert.equal(w.ws.get('ws2').reason, 'its main process ended (exit code 137, killed for lack of memory)');
    // Not restarted, and it keeps its place.
    assert.equal(w.gateway.callsOf('start').length, 2);
    assert.equal(w.ws.hostViews().find((h) => h.name === 'n1')?.reservedCpus, 2);
  });

  it('a missing container makes the workspace Failed', async () => {
    const w = await world();
    await made(w, spec('ws1', { host: 'n1' }));
    w.gateway.lose('n1', 'ws1');
    await w.ws.reconcileHost('n1');
    const ws = w.ws.get('ws1');
    assert.equal(ws.state, 'Failed');
    assert.equal(ws.reason, 'its container is missing on host n1');
    assert.equal(ws.reasonCode, 'LXR_NOT_FOUND', 'a missing container is a catalogue NOT_FOUND');
    assert.equal(w.ws.hostViews().find((h) => h.name === 'n1')?.reservedCpus, 0);
  });

  it('a container replaced by one of another uid counts as missing (and the stranger is removed)', async () => {
    const w = await world();
    await made(w, spec('ws1', { host: 'n1' }));
    w.gateway.lose('n1', 'ws1');
    w.gateway.seed('n1', { name: 'ws1', labels: { [LABEL_CLUSTER]: CLUSTER, [LABEL_UID]: 'old' }, state: 'running' });
    await w.ws.reconcileHost('n1');
    assert.equal(w.ws.get('ws1').state, 'Failed');
    assert.deepEqual(ops(w, 'remove'), ['n1 ws1']);
  });

  it('a stopped workspace whose container runs again is Running', async () => {
    const w = await world();
    await made(w, spec('ws1', { host: 'n1' }));
    await w.ws.stop('ws1');
    await w.gateway.start({ name: 'n1', address: '' }, 'ws1');
    await w.ws.reconcileHost('n1');
    assert.equal(w.ws.get('ws1').state, 'Running');
  });

  it('an orphan container of this cluster is removed; a container of another cluster or of nobody is never touched', async () => {
    const w = await world();
    await made(w, spec('ws1', { host: 'n1' }));
    w.gateway.seed('n1', { name: 'orphan', labels: { [LABEL_CLUSTER]: CLUSTER, [LABEL_UID]: 'gone', [LABEL_WORKSPACE]: 'orphan' }, state: 'running' });
    w.gateway.seed('n1', { name: 'foreign', labels: { [LABEL_CLUSTER]: 'c2', [LABEL_UID]: 'x', [LABEL_WORKSPACE]: 'foreign' }, state: 'running' });
    w.gateway.seed('n1', { name: 'mine', labels: { owner: 'me' }, state: 'stopped' });
    w.gateway.calls.length = 0;
    await w.ws.reconcileHost('n1');
    assert.deepEqual(ops(w, 'remove'), ['n1 orphan']);
    assert.deepEqual(
      w.gateway.calls.filter((c) => c.name === 'foreign' || c.name === 'mine'),
      [],
    );
    assert.deepEqual(w.gateway.callsOf('list').map((c) => c.labels), [{ [LABEL_CLUSTER]: CLUSTER }]);
    assert.deepEqual(w.gateway.containers('n1').map((c) => c.name), ['foreign', 'mine', 'ws1']);
    assert.equal(w.ws.get('ws1').state, 'Running');
  });
});

describe('workspace start, stop and delete', () => {
  it('idle workspaces stop, saying since when and what was last; active ones and stopped ones are left alone', async () => {
    const w = await world();
    for (const n of ['ws1', 'ws2', 'ws3']) await made(w, spec(n));
    await w.ws.stop('ws3');
    w.clock.t += 5 * 60_000;
    w.ws.activity.touch('ws2', 'exec input');
    assert.equal(w.ws.get('ws1').lastActivityKind, 'started');
    assert.equal(w.ws.get('ws3').lastActivity, '', 'a stopped workspace has no activity to show');
    const stopsBefore = ops(w, 'stop').length;
    assert.deepEqual(await w.ws.stopIdle(4 * 60_000), ['ws1']);
    const ws1 = w.ws.get('ws1');
    assert.equal(ws1.state, 'Stopped');
    assert.match(ws1.reason, /^idle: no activity since 2024-01-01T00:00:\d\d\.\d{3}Z \(the last: started\)$/);
    assert.deepEqual(ops(w, 'stop').slice(stopsBefore).map((x) => x.split(' ')[1]), ['ws1']);
    const ws2 = w.ws.get('ws2');
    assert.equal(ws2.state, 'Running');
    assert.deepEqual([ws2.lastActivityKind, ws2.lastActivity], ['exec input', new Date(w.clock.t).toISOString()]);
    assert.deepEqual(await w.ws.stopIdle(4 * 60_000), [], 'nothing more to stop');
  });

  it('stop and start move between Running and Stopped; repeating either is a no-op', async () => {
    const w = await world();
    await made(w, spec('ws1', { host: 'n1' }));
    const stopped = await w.ws.stop('ws1', 7);
    assert.equal(stopped.state, 'Stopped');
    assert.equal(stopped.desired, 'stopped');
    assert.equal(stopped.exitCode, STOPPED_EXIT_CODE);
    assert.equal(stopped.reason, 'stopped by request');
    assert.equal(w.gateway.callsOf('stop')[0]?.graceSeconds, 7);
    assert.equal(w.gateway.container('n1', 'ws1')?.state, 'stopped');
    assert.equal((await w.ws.stop('ws1')).state, 'Stopped');
    assert.equal(w.gateway.callsOf('stop').length, 1);

    const started = await w.ws.start('ws1');
    assert.equal(started.state, 'Running');
    assert.equal(started.desired, 'running');
    assert.equal(started.exitCode, 0);
    assert.equal(w.gateway.container('n1', 'ws1')?.state, 'running');
    assert.equal((await w.ws.start('ws1')).state, 'Running');
    assert.equal(w.gateway.callsOf('start').length, 2);
    assert.equal((await w.store.get<WorkspaceRecord>(workspaceKey('ws1')))?.value.state, 'Running');
  });

  it('illegal operations are FAILED_PRECONDITION naming the state', async () => {
    const w = await world();
    w.gateway.down('n1');
    await made(w, spec('ws1', { host: 'n1' }));
    await rejectsWith(w.ws.stop('ws1'), 'LXR_ILLEGAL_STATE', /cannot stop workspace "ws1": it is Creating/);
    await rejectsWith(w.ws.start('ws1'), 'LXR_ILLEGAL_STATE', /cannot start workspace "ws1": it is Creating/);
    w.gateway.failNext('create', new LxrError('LXR_INVALID_SPEC', 'invalid config: image: no such image'));
    await made(w, spec('ws2', { host: 'n2' }));
    await rejectsWith(w.ws.stop('ws2'), 'LXR_ILLEGAL_STATE', /cannot stop workspace "ws2": it is Failed/);
    await rejectsWith(w.ws.stop('nope'), 'LXR_NOT_FOUND', /workspace "nope" not found/);
    await rejectsWith(w.ws.start('nope'), 'LXR_NOT_FOUND', /workspace "nope" not found/);
  });

  it('start of a Failed workspace makes its container anew', async () => {
    const w = await world();
    w.gateway.failNext('create', new LxrError('LXR_INVALID_SPEC', 'invalid config: image: no such image'));
    assert.equal((await made(w, spec('ws1', { host: 'n2' }))).state, 'Failed');
    const ws = await w.ws.start('ws1');
    assert.equal(ws.state, 'Running');
    assert.equal(w.gateway.container('n2', 'ws1')?.labels[LABEL_UID], ws.uid);
    assert.equal(w.ws.hostViews().find((h) => h.name === 'n2')?.reservedCpus, 1);
  });

  it('delete removes the container and the record', async () => {
    const w = await world();
    await made(w, spec('ws1', { host: 'n1' }));
    await w.ws.delete('ws1');
    assert.deepEqual(w.gateway.containers('n1'), []);
    assert.equal(await w.store.get(workspaceKey('ws1')), undefined);
    assert.throws(() => w.ws.get('ws1'), /workspace "ws1" not found/);
    assert.equal(w.ws.hostViews().find((h) => h.name === 'n1')?.reservedCpus, 0);
    await rejectsWith(w.ws.delete('ws1'), 'LXR_NOT_FOUND', /not found/);
    // The name is free again, with a new uid.
    const again = await made(w, spec('ws1', { host: 'n1', cpus: 2 }));
    assert.equal(again.state, 'Running');
  });

  it('delete never removes a container of the same name that is not the workspace\'s', async () => {
    const w = await world();
    w.gateway.seed('n1', { name: 'ws1', labels: { owner: 'me' }, state: 'running' });
    await made(w, spec('ws1', { host: 'n1' }));
    assert.equal(w.ws.get('ws1').state, 'Failed');
    await w.ws.delete('ws1');
    assert.deepEqual(w.gateway.containers('n1').map((c) => c.labels), [{ owner: 'me' }]);
  });

  it('delete while the host is down removes the record; the orphan goes at the next reconcile', async () => {
    const w = await world();
    await made(w, spec('ws1', { host: 'n1' }));
    w.gateway.down('n1');
    await w.ws.delete('ws1');
    assert.equal(await w.store.get(workspaceKey('ws1')), undefined);
    assert.equal(w.ws.list().length, 0);
    assert.equal(w.gateway.containers('n1').length, 1);
    w.gateway.up('n1');
    await w.ws.reconcileHost('n1');
    assert.deepEqual(w.gateway.containers('n1'), []);
    assert.deepEqual(ops(w, 'remove'), ['n1 ws1']);
  });

  it('delete of a workspace on a NotReady host removes the record without calling the host', async () => {
    const w = await world();
    await made(w, spec('ws1', { host: 'n1' }));
    w.pass(GRACE_MS + 1, ['n2', 'n3']);
    const calls = w.gateway.calls.length;
    await w.ws.delete('ws1');
    assert.equal(w.gateway.calls.length, calls);
    assert.equal(w.ws.list().length, 0);
  });
});

describe('workspaces on NotReady hosts', () => {
  it('are Unknown while the host is NotReady; start and stop are refused naming NotReady', async () => {
    const w = await world();
    await made(w, spec('ws1', { host: 'n1' }));
    await made(w, spec('ws2', { host: 'n2' }));
    w.pass(GRACE_MS + 1, ['n2', 'n3']);
    assert.equal(w.ws.get('ws1').state, 'Unknown');
    assert.equal(w.ws.get('ws2').state, 'Running');
    assert.deepEqual(w.ws.list({ state: 'Unknown' }).map((x) => x.spec!.name), ['ws1']);
    // Unknown is never stored.
    assert.equal((await w.store.get<WorkspaceRecord>(workspaceKey('ws1')))?.value.state, 'Running');
    await rejectsWith(w.ws.stop('ws1'), 'LXR_ILLEGAL_STATE', /it is Unknown \(its host is NotReady\)/);
    await rejectsWith(w.ws.start('ws1'), 'LXR_ILLEGAL_STATE', /NotReady/);
    // Nothing is reconciled there.
    const calls = w.gateway.calls.length;
    await w.ws.reconcileHost('n1');
    assert.equal(w.gateway.calls.length, calls);
    w.hosts.heartbeat('n1', null);
    assert.equal(w.ws.get('ws1').state, 'Running');
  });

  it("with policy 'reschedule', a workspace moves off a host NotReady longer than afterMs, into the room exactly left", async () => {
    const w = await world({ cpus: 2, service: { unready: { policy: 'reschedule', afterMs: 60_000 } } });
    const first = await made(w, spec('ws1', { host: 'n1' }));
    await made(w, spec('full', { host: 'n3', cpus: 2 }));
    await made(w, spec('half', { host: 'n2', cpus: 1 }));
    w.pass(GRACE_MS + 1, ['n2', 'n3']);
    await w.ws.rescheduleUnready();
    assert.equal(w.ws.get('ws1').host, 'n1', 'not yet: NotReady for less than afterMs');
    w.pass(60_000, ['n2', 'n3']);
    await w.ws.rescheduleUnready();
    await w.ws.idle();
    const moved = w.ws.get('ws1');
    assert.equal(moved.host, 'n2');
    assert.equal(moved.state, 'Running');
    assert.equal(moved.reason, '');
    assert.equal(moved.uid, first.uid);
    assert.equal(w.gateway.container('n2', 'ws1')?.state, 'running');
    assert.deepEqual(w.ws.hostViews().map((h) => h.reservedCpus), [0, 2, 2]);
    const trail = w.store.commits.filter((c) => c[0]?.key === workspaceKey('ws1')).map((c) => (c[0] as { value: WorkspaceRecord }).value);
    assert.match(trail.find((r) => r.host === 'n2')!.reason, /^moved from n1, NotReady for 75 s$/);
    // When n1 is back, its copy is an orphan and goes.
    w.hosts.heartbeat('n1', null);
    await w.ws.reconcileHost('n1');
    assert.deepEqual(w.gateway.containers('n1'), []);
    assert.equal(w.ws.get('ws1').state, 'Running');
  });

  it("with policy 'reschedule', a workspace that fits nowhere else stays where it is", async () => {
    const w = await world({ cpus: 2, service: { unready: { policy: 'reschedule', afterMs: 0 } } });
    await made(w, spec('ws1', { host: 'n1', cpus: 2 }));
    await made(w, spec('a', { host: 'n2', cpus: 2 }));
    await made(w, spec('b', { host: 'n3', cpus: 2 }));
    w.pass(GRACE_MS + 1, ['n2', 'n3']);
    await w.ws.rescheduleUnready();
    await w.ws.idle();
    assert.equal(w.ws.get('ws1').host, 'n1');
    assert.equal(w.ws.get('ws1').state, 'Unknown');
    assert.deepEqual(w.ws.hostViews().map((h) => h.reservedCpus), [2, 2, 2]);
  });

  it("with policy 'keep', nothing moves", async () => {
    for (const unready of [{ policy: 'keep' as const, afterMs: 0 }, undefined]) {
      const w = await world(unready ? { service: { unready } } : {});
      await made(w, spec('ws1', { host: 'n1' }));
      w.pass(GRACE_MS + 3_600_000, ['n2', 'n3']);
      const revision = w.store.revision;
      await w.ws.rescheduleUnready();
      await w.ws.idle();
      assert.equal(w.ws.get('ws1').host, 'n1');
      assert.equal(w.ws.get('ws1').state, 'Unknown');
      assert.equal(w.store.revision, revision);
      assert.deepEqual(w.gateway.containers('n2'), []);
    }
  });
});

describe('workspace stop racing the reconcile loop', () => {
  it('a stop whose container the reconcile loop saw end first still answers Stopped, by request', async () => {
    const w = await world();
    await made(w, spec('ws1', { host: 'n1' }));
    const release = w.gateway.hold('stop', 'n1');
    const stopping = w.ws.stop('ws1', 1);
    // Meanwhile the container ends and the reconcile loop records it.
    await new Promise((r) => setTimeout(r, 10));
    w.gateway.exit('n1', 'ws1', 143);
    await w.ws.reconcileHost('n1');
    assert.equal(w.ws.get('ws1').state, 'Stopped');
    release();
    const ws = await stopping;
    assert.deepEqual([ws.state, ws.desired, ws.reason], ['Stopped', 'stopped', 'stopped by request']);
  });
});
