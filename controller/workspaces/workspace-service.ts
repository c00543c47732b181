// Workspaces: what should run where (durable records "workspaces/NAME"),
// driven onto agents and compared with what they report. A create is
// answered once the workspace is placed and recorded (fdatasync'ed), so an
// acknowledged workspace survives a controller killed with -9; the work on
// the agent follows and is repeated after a crash without making a second
// container: the container's name is the workspace's, its create carries
// the workspace uid as request id, and a container with the name but
// another uid is an orphan of a deleted workspace and is removed.
//
// Decisions (docs in README "Controller"):
// - A container that dies is not restarted: the workspace is Stopped with
//   its exit code (a person's shell ended, or it crashed: they start it).
// - A workspace keeps its reservation while Stopped: it starts again on
//   the same host, where its files are.
// - A workspace whose host is NotReady is reported Unknown and left there
//   (--unready-policy keep, the default); with "reschedule" it is created
//   anew on another host after --reschedule-after (its files are lost).
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { alreadyExists, asLxrError, LxrError, notFound } from '../../proto/shared/errors.js';
import type { Container, CreateContainerRequest } from '../../proto/shared/api-types.js';
import type { Workspace, WorkspaceSpec } from '../../proto/shared/controller-types.js';
import type { Logger } from '../../proto/shared/log.js';
import type { AgentGateway, AgentTarget } from '../agents/agent-gateway.js';
import type { HostRegistry } from '../hosts/host-registry.js';
import { decisionError, Reservations, type HostView, type Policy } from '../scheduler/index.js';
import type { Store } from '../store/index.js';
import { checkOperation, checkTransition, type StoredState } from './lifecycle.js';
import { normalizeSpec, sameSpec } from './validate.js';
import { Activity } from './activity.js';

/**
 * What is stored of a workspace: the API's view without what is derived
 * (Unknown, the revision). reasonCode is only there while Failed (records
 * written before it existed have none).
 */
export type WorkspaceRecord = Omit<Workspace, 'spec' | 'state' | 'revision' | 'reasonCode'> & { spec: WorkspaceSpec; state: StoredState; reasonCode?: string };

export const workspaceKey = (name: string): string => `workspaces/${name}`;

/** Labels the controller puts on every container it makes. */
export const LABEL_WORKSPACE = 'lxr.workspace';
export const LABEL_UID = 'lxr.workspace.uid';
export const LABEL_CLUSTER = 'lxr.cluster';

export interface WorkspaceServiceOptions {
  store: Store;
  hosts: HostRegistry;
  gateway: AgentGateway;
  /** Containers of this cluster carry it, so another controller's are never touched. */
  clusterId: string;
  policy?: Policy;
  unready?: { policy: 'keep' | 'reschedule'; afterMs: number };
  /** Metrics hooks: scheduling latency, request-to-Running duration. */
  observe?: { scheduled?(seconds: number): void; created?(seconds: number): void };
  log?: Logger;
  now?: () => number;
}

/** Errors after which a step is tried again later rather than failing the workspace. */
const TRANSIENT = new Set(['LXR_UNAVAILABLE', 'LXR_CONFLICT']);
const isTransient = (e: unknown): boolean => e instanceof LxrError && (TRANSIENT.has(e.reason) || e.code === 4 || e.code === 1);

/** Events: 'changed' (name) after every change of a workspace's record. */
export class WorkspaceService extends EventEmitter {
  private readonly cache = new Map<string, { rec: WorkspaceRecord; revision: number }>();
  /** What people last did in each workspace (idle detection). */
  readonly activity: Activity;
  private readonly reservations = new Reservations();
  /** Creates in progress, so a concurrent identical create waits for the first. */
  private readonly creating = new Map<string, Promise<unknown>>();
  /** One drive per workspace at a time. */
  private readonly driving = new Map<string, Promise<void>>();
  private readonly now: () => number;

  constructor(private readonly o: WorkspaceServiceOptions) {
    super();
    this.setMaxListeners(0);
    this.now = o.now ?? Date.now;
    this.activity = new Activity(this.now);
  }

  async load(): Promise<void> {
    for (const r of await this.o.store.list<WorkspaceRecord>('workspaces/')) {
      this.cache.set(r.value.spec.name, { rec: r.value, revision: r.revision });
      this.reserve(r.value);
    }
  }

  private reserve(rec: WorkspaceRecord): void {
    if (rec.state === 'Failed') this.reservations.release(rec.spec.name);
    else this.reservations.reserve(rec.host, rec.spec.name, rec.spec.cpus, rec.spec.memoryBytes);
  }

  // ------------------------------------------------------------ reading

  /** The hosts with nothing reserved: what Reservations.place takes (it adds the reservations itself). */
  private bareViews(): HostView[] {
    return this.o.hosts.names().map((n) => {
      const h = this.o.hosts.record(n)!;
      return { name: n, ready: this.o.hosts.isReady(n), cordoned: h.cordoned, cpus: h.cpus, memoryBytes: h.memoryBytes, architecture: h.architecture, labels: h.labels, reservedCpus: 0, reservedMemoryBytes: 0, workspaces: 0 };
    });
  }

  /** The hosts as the scheduler sees them, with every placed workspace's request reserved. */
  hostViews(except?: string): HostView[] {
    return this.reservations.apply(this.bareViews(), except);
  }

  /** Unknown when the host is NotReady: nobody can tell what happens there. */
  private stateOf(rec: WorkspaceRecord): Workspace['state'] {
    return this.o.hosts.isReady(rec.host) ? rec.state : 'Unknown';
  }

  private view(e: { rec: WorkspaceRecord; revision: number }): Workspace {
    const r = e.rec;
    const state = this.stateOf(r);
    const last = state === 'Running' ? this.activity.of(r.spec.name, r.startedAt) : null;
    return {
      spec: structuredClone(r.spec), uid: r.uid, host: r.host, state, reason: r.reason, desired: r.desired, address: r.address, createdAt: r.createdAt, startedAt: r.startedAt, exitCode: r.exitCode, revision: e.revision, reasonCode: r.reasonCode ?? '',
      lastActivity: last ? new Date(last.at).toISOString() : '', lastActivityKind: last?.kind ?? '',
    };
  }

  get(name: string): Workspace {
    const e = this.cache.get(name ?? '');
    if (!e) throw notFound('workspace', name ?? '');
    return this.view(e);
  }

  list(filter: { host?: string; state?: string } = {}): Workspace[] {
    return [...this.cache.values()]
      .map((e) => this.view(e))
      .filter((w) => (!filter.host || w.host === filter.host) && (!filter.state || w.state === filter.state))
      .sort((a, b) => a.spec!.name.localeCompare(b.spec!.name));
  }

  /** Names of the workspaces placed on a host. */
  placedOn(host: string): string[] {
    return [...this.cache.values()].filter((e) => e.rec.host === host).map((e) => e.rec.spec.name).sort();
  }

  // ------------------------------------------------------------ writing

  /** Writes a new version of a record if nobody changed it meanwhile (LXR_CONFLICT otherwise). */
  private async update(name: string, patch: Partial<WorkspaceRecord>, from?: StoredState): Promise<WorkspaceRecord> {
    const cur = this.cache.get(name);
    if (!cur) throw notFound('workspace', name);
    if (from && cur.rec.state !== from) throw new LxrError('LXR_CONFLICT', `workspace ${name} changed meanwhile: it is ${cur.rec.state}, not ${from}`);
    if (patch.state && patch.state !== cur.rec.state) checkTransition(name, cur.rec.state, patch.state);
    const rec = { ...cur.rec, ...patch };
    // The catalogue reason explains a failure only: it goes when the state leaves Failed.
    if (rec.state !== 'Failed') delete rec.reasonCode;
    const revision = await this.o.store.commit([{ type: 'put', key: workspaceKey(name), value: rec, expect: cur.revision }]);
    this.cache.set(name, { rec, revision });
    this.reserve(rec);
    this.emit('changed', name);
    return rec;
  }

  async create(specIn: Partial<WorkspaceSpec> | null | undefined, wait = false): Promise<{ workspace: Workspace; created: boolean }> {
    const spec = normalizeSpec(specIn);
    const name = spec.name;
    for (let inflight = this.creating.get(name); inflight; inflight = this.creating.get(name)) await inflight.catch(() => {});
    const existing = this.cache.get(name);
    if (existing) {
      if (!sameSpec(existing.rec.spec, spec)) throw alreadyExists('workspace', name);
      if (wait) await this.settled(name);
      return { workspace: this.get(name), created: false };
    }
    const p = this.place(spec);
    this.creating.set(name, p);
    try {
      await p;
    } finally {
      this.creating.delete(name);
    }
    this.kick(name);
    if (wait) await this.settled(name);
    return { workspace: this.get(name), created: true };
  }

  /** Schedules (synchronously, so concurrent creates see each other's reservations) and records. */
  private async place(spec: WorkspaceSpec): Promise<void> {
    const t0 = process.hrtime.bigint();
    const d = this.reservations.place(this.bareViews(), spec.name, { cpus: spec.cpus, memoryBytes: spec.memoryBytes, selector: spec.hostSelector, ...(spec.architecture ? { architecture: spec.architecture } : {}), ...(spec.host ? { host: spec.host } : {}) }, this.o.policy ?? 'spread');
    this.o.observe?.scheduled?.(Number(process.hrtime.bigint() - t0) / 1e9);
    if (!d.ok) throw decisionError(d);
    const rec: WorkspaceRecord = { spec, uid: randomUUID(), host: d.host, state: 'Pending', reason: '', desired: 'running', address: '', createdAt: new Date(this.now()).toISOString(), startedAt: '', exitCode: 0 };
    try {
      const revision = await this.o.store.commit([{ type: 'put', key: workspaceKey(spec.name), value: rec, expect: 0 }]);
      this.cache.set(spec.name, { rec, revision });
    } catch (e) {
      this.reservations.release(spec.name);
      throw e;
    }
    this.o.log?.info({ container: spec.name, host: d.host }, 'workspace placed');
    this.emit('changed', spec.name);
  }

  /** Resolves once the workspace runs or failed (rejects when it is deleted meanwhile). */
  settled(name: string, timeoutMs = 10 * 60_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const e = this.cache.get(name);
        if (!e) {
          done();
          reject(notFound('workspace', name));
          return true;
        }
        if (e.rec.state === 'Running' || e.rec.state === 'Failed' || e.rec.state === 'Stopped') {
          done();
          resolve();
          return true;
        }
        return false;
      };
      const onChange = (n: string): void => {
        if (n === name) check();
      };
      const t = setTimeout(() => {
        done();
        reject(new LxrError('LXR_UNAVAILABLE', `workspace ${name} did not start within ${timeoutMs / 1000} s (its host may be unreachable); it is still being created`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(t);
        this.off('changed', onChange);
      };
      this.on('changed', onChange);
      check();
    });
  }

  /** Starts driving a workspace towards what it should be, once at a time. */
  kick(name: string): Promise<void> {
    const cur = this.driving.get(name);
    if (cur) return cur;
    const p = this.drive(name)
      .catch((e: unknown) => this.o.log?.warn({ container: name, err: e }, 'workspace step failed; tried again at the next reconcile'))
      .finally(() => this.driving.delete(name));
    this.driving.set(name, p);
    return p;
  }

  private target(host: string): AgentTarget | null {
    const h = this.o.hosts.record(host);
    return h && this.o.hosts.isReady(host) ? { name: h.name, address: h.address } : null;
  }

  private containerRequest(rec: WorkspaceRecord): CreateContainerRequest {
    const s = rec.spec;
    return {
      name: s.name,
      image: s.image,
      command: s.command,
      env: s.env,
      limits: { cpus: s.cpus, memoryBytes: s.memoryBytes, pids: 0 },
      labels: { ...s.labels, [LABEL_WORKSPACE]: s.name, [LABEL_UID]: rec.uid, [LABEL_CLUSTER]: this.o.clusterId },
      network: { mode: 'bridge', address: '', ports: s.ports },
      hostname: s.name,
      requestId: rec.uid,
      ...(s.ide ? { ide: s.ide } : {}),
      // Started in the same call; a container adopted as created is started by drive().
      start: true,
    };
  }

  /** Pending/Creating -> Running on the agent; repeatable (after a crash it adopts what exists). */
  private async drive(name: string): Promise<void> {
    const cur = this.cache.get(name);
    if (!cur || cur.rec.desired !== 'running' || (cur.rec.state !== 'Pending' && cur.rec.state !== 'Creating')) return;
    const t = this.target(cur.rec.host);
    if (!t) return; // the host is NotReady: the reconcile loop comes back
    let rec = cur.rec.state === 'Pending' ? await this.update(name, { state: 'Creating', reason: '' }, 'Pending') : cur.rec;
    const uid = rec.uid;
    let ctr: Container;
    try {
      ctr = await this.createOn(t, rec);
      // Created with start; one adopted as created (a crash, a failed start) is started here.
      // Not one that already ran and exited: that would run its command again.
      if (ctr.state === 'created') ctr = await this.o.gateway.start(t, name);
    } catch (e) {
      if (isTransient(e)) {
        // Tried again at the next reconcile; meanwhile the record says why it is still Creating.
        const why = `retrying: ${(e as Error).message}`;
        const now = this.cache.get(name);
        if (now?.rec.uid === uid && now.rec.state === 'Creating' && now.rec.reason !== why) await this.update(name, { reason: why }, 'Creating').catch(() => {});
        throw e;
      }
      if (this.cache.get(name)?.rec.uid !== uid) return; // deleted meanwhile: the orphan sweep removes the container
      await this.update(name, { state: 'Failed', reason: (e as Error).message, reasonCode: asLxrError(e).reason }, 'Creating');
      this.o.log?.warn({ container: name, host: t.name, err: e }, 'workspace failed');
      return;
    }
    if (this.cache.get(name)?.rec.uid !== uid) return;
    rec = await this.update(name, { state: 'Running', reason: '', address: ctr.address, startedAt: ctr.startedAt || new Date(this.now()).toISOString(), exitCode: 0 }, 'Creating');
    this.o.observe?.created?.((this.now() - Date.parse(rec.createdAt)) / 1000);
    this.o.log?.info({ container: name, host: t.name, address: ctr.address }, 'workspace running');
  }

  /** Creates the container, or adopts the one a crashed controller made; removes an orphan in the way. */
  private async createOn(t: AgentTarget, rec: WorkspaceRecord): Promise<Container> {
    try {
      return await this.o.gateway.create(t, this.containerRequest(rec));
    } catch (e) {
      if (!(e instanceof LxrError && e.reason === 'LXR_ALREADY_EXISTS')) throw e;
    }
    const there = await this.o.gateway.get(t, rec.spec.name);
    if (there.labels[LABEL_UID] === rec.uid) return there;
    if (there.labels[LABEL_CLUSTER] !== this.o.clusterId) {
      throw new LxrError('LXR_ALREADY_EXISTS', `host ${t.name} has a container named ${rec.spec.name} that this cluster did not make: remove it there or choose another name`);
    }
    this.o.log?.info({ container: rec.spec.name, host: t.name, uid: there.labels[LABEL_UID] }, 'removing the container of an earlier workspace of this name');
    await this.o.gateway.remove(t, rec.spec.name);
    return this.o.gateway.create(t, this.containerRequest(rec));
  }

  async start(name: string): Promise<Workspace> {
    const cur = this.cache.get(name);
    if (!cur) throw notFound('workspace', name);
    if (checkOperation(name, this.stateOf(cur.rec), 'start') === 'noop') return this.get(name);
    const t = this.target(cur.rec.host)!;
    const from = cur.rec.state;
    try {
      const ctr = await this.o.gateway.start(t, name);
      if (ctr.labels[LABEL_UID] !== cur.rec.uid) throw notFound('container', name);
      // As in stop: the reconcile loop may have recorded it Running first.
      const now = this.cache.get(name);
      if (!now || now.rec.uid !== cur.rec.uid) return this.get(name);
      await this.update(name, { state: 'Running', desired: 'running', reason: '', address: ctr.address, startedAt: ctr.startedAt, exitCode: 0 }, now.rec.state === 'Running' ? 'Running' : from);
    } catch (e) {
      if (!(e instanceof LxrError && e.reason === 'LXR_NOT_FOUND')) throw e;
      // Its container is gone (a Failed create, a host that lost it): make it anew.
      await this.update(name, { state: 'Pending', desired: 'running', reason: `recreated: ${e.message}` }, from);
      await this.kick(name);
      await this.settled(name);
    }
    return this.get(name);
  }

  /**
   * Stops every Running workspace with no activity for `idleMs` (the
   * record says why); `lxrctl start` brings one back with its files.
   */
  async stopIdle(idleMs: number): Promise<string[]> {
    const now = this.now();
    // In parallel: after a controller restart many go idle at once, and each stop has a grace.
    const stops = this.list({ state: 'Running' }).map(async (w): Promise<string | null> => {
      const name = w.spec!.name;
      const last = this.activity.of(name, w.startedAt);
      if (now - last.at < idleMs) return null;
      const reason = `idle: no activity since ${new Date(last.at).toISOString()} (the last: ${last.kind})`;
      try {
        await this.stop(name, 10, reason);
        this.o.log?.info({ workspace: name, last: last.kind, since: new Date(last.at).toISOString() }, 'stopped an idle workspace');
        return name;
      } catch (e) {
        this.o.log?.warn({ workspace: name, err: e }, 'stopping an idle workspace failed');
        return null;
      }
    });
    return (await Promise.all(stops)).filter((n): n is string => n !== null);
  }

  async stop(name: string, graceSeconds = 0, reason = 'stopped by request'): Promise<Workspace> {
    const cur = this.cache.get(name);
    if (!cur) throw notFound('workspace', name);
    if (checkOperation(name, this.stateOf(cur.rec), 'stop') === 'noop') {
      if (cur.rec.desired !== 'stopped') await this.update(name, { desired: 'stopped' });
      return this.get(name);
    }
    const t = this.target(cur.rec.host)!;
    const uid = cur.rec.uid;
    const ctr = await this.o.gateway.stop(t, name, graceSeconds);
    // The reconcile loop may have seen the container end first and recorded it Stopped
    // (or committed something else meanwhile): the stop was asked for all the same.
    for (let attempt = 0; ; attempt++) {
      const now = this.cache.get(name);
      if (!now || now.rec.uid !== uid) return this.get(name);
      try {
        await this.update(name, { state: 'Stopped', desired: 'stopped', reason, exitCode: ctr.exitCode }, now.rec.state === 'Stopped' ? 'Stopped' : 'Running');
        return this.get(name);
      } catch (e) {
        if (!(e instanceof LxrError && e.reason === 'LXR_CONFLICT') || attempt >= 3) throw e;
      }
    }
  }

  /**
   * Removes the container (when its host answers) and the record. A host
   * that does not answer does not keep the record: its container is an
   * orphan, removed when the host is back.
   */
  async delete(name: string): Promise<void> {
    const cur = this.cache.get(name);
    if (!cur) throw notFound('workspace', name);
    this.activity.forget(name);
    const t = this.target(cur.rec.host);
    if (t) {
      try {
        const there = await this.o.gateway.get(t, name);
        if (there.labels[LABEL_UID] === cur.rec.uid) await this.o.gateway.remove(t, name);
      } catch (e) {
        if (!(e instanceof LxrError && (e.reason === 'LXR_NOT_FOUND' || isTransient(e)))) throw e;
      }
    }
    const latest = this.cache.get(name);
    if (!latest) return;
    await this.o.store.commit([{ type: 'delete', key: workspaceKey(name), expect: latest.revision }]);
    this.cache.delete(name);
    this.reservations.release(name);
    this.o.log?.info({ container: name, host: cur.rec.host }, 'workspace deleted');
    this.emit('changed', name);
  }

  /** Deletes the records of every workspace on a host (a forced host removal). */
  async forget(host: string): Promise<string[]> {
    const names = this.placedOn(host);
    for (const n of names) {
      const e = this.cache.get(n)!;
      await this.o.store.commit([{ type: 'delete', key: workspaceKey(n), expect: e.revision }]);
      this.cache.delete(n);
      this.reservations.release(n);
      this.emit('changed', n);
    }
    return names;
  }

  // --------------------------------------------------------- reconciling

  /**
   * Compares one Ready host's containers with the workspaces placed there:
   * a container that died makes its workspace Stopped, a missing one makes
   * it Failed, a container this cluster made for no (current) workspace is
   * removed, and workspaces still to be created are driven.
   */
  async reconcileHost(host: string): Promise<void> {
    const t = this.target(host);
    if (!t) return;
    const ctrs = await this.o.gateway.list(t, { [LABEL_CLUSTER]: this.o.clusterId });
    const byName = new Map(ctrs.map((c) => [c.name, c]));
    for (const name of this.placedOn(host)) {
      if (this.driving.has(name) || this.creating.has(name)) continue;
      const e = this.cache.get(name);
      if (!e) continue;
      const r = e.rec;
      const c = byName.get(name);
      const ours = c && c.labels[LABEL_UID] === r.uid;
      try {
        if (r.state === 'Pending' || r.state === 'Creating') {
          if (r.desired === 'running') await this.kick(name);
        } else if (r.state === 'Running') {
          if (!ours) await this.update(name, { state: 'Failed', reason: `its container is missing on host ${host}`, reasonCode: 'LXR_NOT_FOUND' }, 'Running');
          else if (c.state !== 'running') {
            await this.update(name, { state: 'Stopped', desired: 'stopped', exitCode: c.exitCode, reason: `its main process ended (exit code ${c.exitCode}${c.oomKilled ? ', killed for lack of memory' : ''})` }, 'Running');
          }
        } else if (r.state === 'Stopped' || r.state === 'Failed') {
          if (ours && c.state === 'running') await this.update(name, { state: 'Running', reason: '', address: c.address, startedAt: c.startedAt }, r.state);
          else if (!ours && r.state === 'Stopped') await this.update(name, { state: 'Failed', reason: `its container is missing on host ${host}`, reasonCode: 'LXR_NOT_FOUND' }, 'Stopped');
        }
      } catch (err) {
        if (!(err instanceof LxrError && err.reason === 'LXR_CONFLICT')) throw err;
      }
    }
    for (const c of ctrs) {
      const e = this.cache.get(c.name);
      if (e && e.rec.host === host && e.rec.uid === c.labels[LABEL_UID]) continue;
      if (this.creating.has(c.name) || this.driving.has(c.name)) continue;
      this.o.log?.info({ container: c.name, host }, 'removing an orphan container (its workspace was deleted or moved)');
      await this.o.gateway.remove(t, c.name).catch((err: unknown) => this.o.log?.warn({ container: c.name, host, err }, 'cannot remove an orphan container'));
    }
  }

  /** With --unready-policy reschedule: workspaces of hosts NotReady for too long go elsewhere. */
  async rescheduleUnready(): Promise<void> {
    const u = this.o.unready;
    if (!u || u.policy !== 'reschedule') return;
    for (const e of [...this.cache.values()]) {
      const r = e.rec;
      if (r.desired !== 'running' || this.o.hosts.isReady(r.host) || this.o.hosts.silentFor(r.host) < u.afterMs) continue;
      const views = this.bareViews().filter((h) => h.name !== r.host);
      const d = this.reservations.place(views, r.spec.name, { cpus: r.spec.cpus, memoryBytes: r.spec.memoryBytes, selector: r.spec.hostSelector, ...(r.spec.architecture ? { architecture: r.spec.architecture } : {}) }, this.o.policy ?? 'spread');
      if (!d.ok) {
        this.reserve(r);
        continue;
      }
      const rec: WorkspaceRecord = { ...r, host: d.host, state: 'Pending', reason: `moved from ${r.host}, NotReady for ${Math.round(this.o.hosts.silentFor(r.host) / 1000)} s`, address: '', startedAt: '' };
      delete rec.reasonCode;
      const revision = await this.o.store.commit([{ type: 'put', key: workspaceKey(r.spec.name), value: rec, expect: e.revision }]);
      this.cache.set(r.spec.name, { rec, revision });
      this.emit('changed', r.spec.name);
      this.o.log?.warn({ container: r.spec.name, from: r.host, to: d.host }, 'workspace rescheduled off a NotReady host');
      this.kick(r.spec.name);
    }
  }

  /** Waits for drives in flight (shutdown, tests). */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.driving.values()]);
  }
}
