// The scheduler as tables: each filter alone and its worded reason, spread
// and binpack with deterministic ties, pinned hosts still validated, the
// errors a create fails with, reservations that never over-commit, and the
// input left untouched.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  Reservations,
  architecture,
  decisionError,
  enoughCpu,
  enoughMemory,
  formatBytes,
  labels,
  notCordoned,
  ready,
  schedule,
  type Decision,
  type Filter,
  type HostView,
  type Policy,
  type ScheduleRequest,
} from '../../controller/scheduler/index.js';
import { Code, LxrError } from '../../proto/shared/errors.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function host(name: string, over: Partial<HostView> = {}): HostView {
  return {
    name,
    ready: true,
    cordoned: false,
    cpus: 4,
    memoryBytes: 8 * GiB,
    architecture: 'amd64',
    labels: {},
    reservedCpus: 0,
    reservedMemoryBytes: 0,
    workspaces: 0,
    ...over,
  };
}

const req = (over: Partial<ScheduleRequest> = {}): ScheduleRequest => ({ cpus: 1, memoryBytes: GiB, ...over });

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

function rejected(d: Decision): Extract<Decision, { ok: false }> {
  assert.equal(d.ok, false, JSON.stringify(d));
  return d as Extract<Decision, { ok: false }>;
}

describe('scheduler filters, each alone', () => {
  const cases: Array<[string, Filter, HostView, ScheduleRequest, string | null]> = [
    ['ready host', ready, host('n1'), req(), null],
    ['NotReady host', ready, host('n1', { ready: false }), req(), 'NotReady'],
    ['not cordoned', notCordoned, host('n1'), req(), null],
    ['cordoned', notCordoned, host('n1', { cordoned: true }), req(), 'cordoned'],
    ['cpu fits exactly', enoughCpu, host('n1', { reservedCpus: 2 }), req({ cpus: 2 }), null],
    ['cpu fits with float noise', enoughCpu, host('n1', { cpus: 0.3, reservedCpus: 0.1 + 0.1 }), req({ cpus: 0.1 }), null],
    ['cpu short', enoughCpu, host('n1', { reservedCpus: 2.5 }), req({ cpus: 2 }), 'needs 2 cpus, 1.5 of 4 unreserved'],
    ['one cpu short', enoughCpu, host('n1', { reservedCpus: 3.75 }), req({ cpus: 1 }), 'needs 1 cpu, 0.25 of 4 unreserved'],
    ['over-reserved cpu shows 0 unreserved', enoughCpu, host('n1', { reservedCpus: 5 }), req({ cpus: 1 }), 'needs 1 cpu, 0 of 4 unreserved'],
    ['0 cpus fits a full host', enoughCpu, host('n1', { reservedCpus: 4 }), req({ cpus: 0 }), null],
    ['0 cpus fits a host reporting 0 cpus', enoughCpu, host('n1', { cpus: 0 }), req({ cpus: 0 }), null],
    ['memory fits exactly', enoughMemory, host('n1', { reservedMemoryBytes: 6 * GiB }), req({ memoryBytes: 2 * GiB }), null],
    ['memory short', enoughMemory, host('n1', { reservedMemoryBytes: 8 * GiB - 512 * MiB }), req({ memoryBytes: 2 * GiB }), 'needs 2.0 GiB memory, 512.0 MiB of 8.0 GiB unreserved'],
    ['0 memory fits a full host', enoughMemory, host('n1', { reservedMemoryBytes: 8 * GiB }), req({ memoryBytes: 0 }), null],
    ['any architecture', architecture, host('n1', { architecture: 'arm64' }), req(), null],
    ['empty architecture is any', architecture, host('n1', { architecture: 'arm64' }), req({ architecture: '' }), null],
    ['same architecture', architecture, host('n1'), req({ architecture: 'amd64' }), null],
    ['architecture aliases', architecture, host('n1', { architecture: 'x86_64' }), req({ architecture: 'amd64' }), null],
    ['aarch64 is arm64', architecture, host('n1', { architecture: 'aarch64' }), req({ architecture: 'arm64' }), null],
    ['other architecture', architecture, host('n1', { architecture: 'arm64' }), req({ architecture: 'amd64' }), 'architecture arm64, wants amd64'],
    ['no selector', labels, host('n1', { labels: { zone: 'a' } }), req(), null],
    ['label matches', labels, host('n1', { labels: { zone: 'a', gpu: 'true' } }), req({ selector: { zone: 'a' } }), null],
    ['label differs', labels, host('n1', { labels: { zone: 'b' } }), req({ selector: { zone: 'a' } }), 'label zone=b, wants zone=a'],
    ['label missing', labels, host('n1'), req({ selector: { gpu: 'true' } }), 'no label gpu, wants gpu=true'],
    ['label inherited from the prototype is missing', labels, host('n1'), req({ selector: { toString: 'x' } }), 'no label toString, wants toString=x'],
    ['every missed label, by key', labels, host('n1', { labels: { zone: 'b' } }), req({ selector: { zone: 'a', gpu: 'true' } }), 'no label gpu, wants gpu=true and label zone=b, wants zone=a'],
  ];
  for (const [name, f, h, r, want] of cases) {
    it(name, () => assert.equal(f(h, r), want));
  }
});

describe('formatting quantities', () => {
  const cases: Array<[number, string]> = [
    [0, '0 B'],
    [512, '512 B'],
    [1024, '1.0 KiB'],
    [512 * MiB, '512.0 MiB'],
    [1.5 * GiB, '1.5 GiB'],
    [2 * 1024 * GiB, '2.0 TiB'],
  ];
  for (const [n, want] of cases) it(`${n} bytes -> ${want}`, () => assert.equal(formatBytes(n), want));
});

describe('scoring', () => {
  const cases: Array<[string, HostView[], ScheduleRequest, Policy, string]> = [
    ['spread: the emptiest host', [host('a', { reservedCpus: 2 }), host('b', { reservedCpus: 1 }), host('c', { reservedCpus: 3 })], req(), 'spread', 'b'],
    ['spread: the busiest resource counts', [host('a', { reservedMemoryBytes: 6 * GiB }), host('b', { reservedCpus: 2 })], req(), 'spread', 'b'],
    ['spread: capacity matters, not absolute use', [host('a', { cpus: 4, reservedCpus: 2 }), host('b', { cpus: 16, reservedCpus: 4, memoryBytes: 32 * GiB })], req(), 'spread', 'b'],
    ['spread tie: fewer workspaces', [host('a', { workspaces: 3 }), host('b', { workspaces: 1 })], req({ cpus: 0, memoryBytes: 0 }), 'spread', 'b'],
    ['spread tie: name ascending', [host('c'), host('a'), host('b')], req(), 'spread', 'a'],
    ['binpack: the fullest host that fits', [host('a', { reservedCpus: 2 }), host('b', { reservedCpus: 3 }), host('c', { reservedCpus: 1 })], req(), 'binpack', 'b'],
    ['binpack skips hosts that do not fit', [host('a', { reservedCpus: 2 }), host('b', { reservedCpus: 3.5 })], req(), 'binpack', 'a'],
    ['binpack tie: more workspaces', [host('a', { workspaces: 1 }), host('b', { workspaces: 3 })], req({ cpus: 0, memoryBytes: 0 }), 'binpack', 'b'],
    ['binpack tie: name ascending', [host('c'), host('b'), host('a')], req(), 'binpack', 'a'],
    ['a host reporting 0 cpus takes a 0-cpu request as full (spread avoids it)', [host('a', { cpus: 0, reservedCpus: 0.5 }), host('b', { reservedCpus: 3 })], req({ cpus: 0 }), 'spread', 'b'],
    ['a host reporting 0 memory with nothing asked is empty', [host('a', { memoryBytes: 0 }), host('b', { reservedCpus: 1 })], req({ memoryBytes: 0 }), 'spread', 'a'],
  ];
  for (const [name, hosts, r, policy, want] of cases) {
    it(name, () => assert.deepEqual(schedule(hosts, r, policy), { ok: true, host: want }));
  }

  it('the default policy is spread', () => {
    assert.deepEqual(schedule([host('a', { reservedCpus: 2 }), host('b')], req()), { ok: true, host: 'b' });
  });

  it('the answer does not depend on the order of the hosts', () => {
    const hosts = [host('a'), host('b'), host('c', { reservedCpus: 1 }), host('d')];
    for (const policy of ['spread', 'binpack'] as const) {
      const want = schedule(hosts, req(), policy);
      for (const perm of [[...hosts].reverse(), [hosts[2]!, hosts[0]!, hosts[3]!, hosts[1]!]]) assert.deepEqual(schedule(perm, req(), policy), want);
    }
  });

  const placeMany = (n: number, policy: Policy): Record<string, number> => {
    const hosts = [host('n1'), host('n2'), host('n3')];
    const res = new Reservations();
    const counts: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const d = res.place(hosts, `ws${i}`, req(), policy);
      assert.ok(d.ok, JSON.stringify(d));
      counts[d.host] = (counts[d.host] ?? 0) + 1;
    }
    return counts;
  };

  it('spread: 6 workspaces on 3 equal hosts land 2/2/2', () => {
    assert.deepEqual(placeMany(6, 'spread'), { n1: 2, n2: 2, n3: 2 });
  });

  it('binpack: fills one host before the next', () => {
    assert.deepEqual(placeMany(6, 'binpack'), { n1: 4, n2: 2 });
  });
});

describe('pinned hosts are still validated', () => {
  const hosts = [host('n1'), host('n2', { cordoned: true }), host('n3', { reservedCpus: 4, reservedMemoryBytes: 8 * GiB }), host('n4', { ready: false })];

  it('a pinned host that fits is chosen even when spread would choose another', () => {
    const hs = [host('n1', { reservedCpus: 3 }), host('n2')];
    assert.deepEqual(schedule(hs, req({ host: 'n1' })), { ok: true, host: 'n1' });
  });

  it('an empty pin means not pinned', () => {
    assert.deepEqual(schedule(hosts, req({ host: '' })), { ok: true, host: 'n1' });
  });

  const cases: Array<[string, string, string, number, RegExp]> = [
    ['unknown host', 'nope', 'LXR_NOT_FOUND', Code.NOT_FOUND, /host "nope" not found/],
    ['cordoned', 'n2', 'LXR_HOST_UNSCHEDULABLE', Code.FAILED_PRECONDITION, /^host n2 cannot take the workspace: cordoned$/],
    ['full: names the resources', 'n3', 'LXR_HOST_UNSCHEDULABLE', Code.FAILED_PRECONDITION, /^host n3 cannot take the workspace: needs 1 cpu, 0 of 4 unreserved and needs 1\.0 GiB memory, 0 B of 8\.0 GiB unreserved$/],
    ['NotReady', 'n4', 'LXR_HOST_UNSCHEDULABLE', Code.FAILED_PRECONDITION, /^host n4 cannot take the workspace: NotReady$/],
  ];
  for (const [name, pin, reason, code, message] of cases) {
    it(`${name} -> ${reason}`, () => {
      const d = rejected(schedule(hosts, req({ host: pin })));
      assert.equal(d.pinned, pin);
      const e = decisionError(d);
      assert.ok(e instanceof LxrError);
      assert.equal(e.reason, reason);
      assert.equal(e.code, code);
      assert.match(e.message, message);
    });
  }

  it('unknown pinned host is flagged in the decision', () => {
    assert.deepEqual(schedule(hosts, req({ host: 'nope' })), { ok: false, pinned: 'nope', unknownHost: true, reasons: [] });
  });
});

describe('when nothing fits', () => {
  it('the error names every host with its reason, by name', () => {
    const b = { zone: 'b' };
    const hosts = [
      host('n5', { architecture: 'arm64', labels: b }),
      host('n2', { cordoned: true, labels: b }),
      host('n1', { ready: false, labels: b }),
      host('n4', { labels: { zone: 'a' } }),
      host('n3', { reservedCpus: 2.5, labels: b }),
      host('n6', { labels: b, reservedMemoryBytes: 7.5 * GiB }),
    ];
    const d = rejected(schedule(hosts, req({ cpus: 2, architecture: 'amd64', selector: { zone: 'b' } })));
    assert.deepEqual(d.reasons.map((r) => r.host), ['n1', 'n2', 'n3', 'n4', 'n5', 'n6']);
    const e = decisionError(d);
    assert.equal(e.reason, 'LXR_NO_HOST_FITS');
    assert.equal(e.code, Code.RESOURCE_EXHAUSTED);
    assert.equal(
      e.message,
      'no host can take the workspace: n1: NotReady; n2: cordoned; n3: needs 2 cpus, 1.5 of 4 unreserved; ' +
        'n4: label zone=a, wants zone=b; n5: architecture arm64, wants amd64; n6: needs 1.0 GiB memory, 512.0 MiB of 8.0 GiB unreserved',
    );
  });

  it('a host failing several filters gives every reason', () => {
    const d = rejected(schedule([host('n1', { ready: false, cordoned: true, reservedCpus: 4 })], req()));
    assert.deepEqual(d.reasons, [{ host: 'n1', reason: 'NotReady and cordoned and needs 1 cpu, 0 of 4 unreserved' }]);
  });

  it('no hosts at all', () => {
    const d = rejected(schedule([], req()));
    assert.deepEqual(d, { ok: false, reasons: [] });
    const e = decisionError(d);
    assert.equal(e.reason, 'LXR_NO_HOST_FITS');
    assert.equal(e.message, 'no host can take the workspace: no hosts are registered');
  });
});

describe('selector, architecture and best-effort requests', () => {
  const hosts = [host('a', { labels: { zone: 'a' } }), host('b', { labels: { zone: 'b', gpu: 'true' }, architecture: 'arm64' }), host('c', { cpus: 0, memoryBytes: 0 })];
  const cases: Array<[string, ScheduleRequest, string]> = [
    ['selector picks the labelled host', req({ selector: { gpu: 'true' } }), 'b'],
    ['selector with two labels', req({ selector: { zone: 'b', gpu: 'true' } }), 'b'],
    ['architecture picks the arm64 host', req({ architecture: 'arm64' }), 'b'],
    ['architecture alias in the request', req({ architecture: 'aarch64' }), 'b'],
    ['a request of 0 fits a host reporting no capacity', req({ cpus: 0, memoryBytes: 0, host: 'c' }), 'c'],
    ['a request of 0 leaves every host at 0: the tie goes by name', req({ cpus: 0, memoryBytes: 0 }), 'a'],
  ];
  for (const [name, r, want] of cases) it(name, () => assert.deepEqual(schedule(hosts, r), { ok: true, host: want }));

  it('a host reporting no capacity fits no real request', () => {
    assert.deepEqual(rejected(schedule(hosts, req({ host: 'c' }))).reasons, [{ host: 'c', reason: 'needs 1 cpu, 0 of 0 unreserved and needs 1.0 GiB memory, 0 B of 0 B unreserved' }]);
  });

  it('a full host still takes a request of 0', () => {
    const full = [host('a', { reservedCpus: 4, reservedMemoryBytes: 8 * GiB, workspaces: 9 })];
    assert.deepEqual(schedule(full, req({ cpus: 0, memoryBytes: 0 })), { ok: true, host: 'a' });
    assert.deepEqual(schedule(full, req({ cpus: 0, memoryBytes: 0, host: 'a' })), { ok: true, host: 'a' });
  });
});

describe('bad requests are named', () => {
  const cases: Array<[string, ScheduleRequest, string]> = [
    ['negative cpus', req({ cpus: -1 }), 'cpus'],
    ['NaN cpus', req({ cpus: NaN }), 'cpus'],
    ['infinite cpus', req({ cpus: Infinity }), 'cpus'],
    ['negative memory', req({ memoryBytes: -1 }), 'memory'],
    ['NaN memory', req({ memoryBytes: NaN }), 'memory'],
    ['empty selector key', req({ selector: { '': 'x' } }), 'selector'],
  ];
  for (const [name, r, field] of cases) {
    it(name, () => {
      assert.throws(
        () => schedule([host('n1')], r),
        (e: unknown) => e instanceof LxrError && e.reason === 'LXR_INVALID_ARGUMENT' && e.code === Code.INVALID_ARGUMENT && e.field === field && e.message.includes(field),
      );
    });
  }
});

describe('reservations', () => {
  it('never over-commit: 10 creates of 1 cpu on two 4-cpu hosts, exactly 8 placed, then NO_HOST_FITS', () => {
    const hosts = deepFreeze([host('n1'), host('n2')]);
    const res = new Reservations();
    const placed: string[] = [];
    const failed: Decision[] = [];
    for (let i = 0; i < 10; i++) {
      const d = res.place(hosts, `ws${i}`, req({ memoryBytes: 0 }));
      if (d.ok) placed.push(d.host);
      else failed.push(d);
    }
    assert.equal(placed.length, 8);
    assert.deepEqual(placed.filter((h) => h === 'n1').length, 4);
    assert.equal(failed.length, 2);
    for (const d of failed) {
      const e = decisionError(rejected(d));
      assert.equal(e.reason, 'LXR_NO_HOST_FITS');
      assert.equal(e.message, 'no host can take the workspace: n1: needs 1 cpu, 0 of 4 unreserved; n2: needs 1 cpu, 0 of 4 unreserved');
    }
    assert.equal(res.size, 8);
  });

  it('apply adds cpus, memory and a workspace per reservation; unknown hosts are ignored', () => {
    const res = new Reservations();
    res.reserve('n1', 'a', 1, GiB);
    res.reserve('n1', 'b', 0.5, 2 * GiB);
    res.reserve('gone', 'c', 3, GiB);
    const [n1, n2] = res.apply([host('n1', { reservedCpus: 1, workspaces: 1 }), host('n2')]);
    assert.deepEqual([n1!.reservedCpus, n1!.reservedMemoryBytes, n1!.workspaces], [2.5, 3 * GiB, 3]);
    assert.deepEqual(n2, host('n2'));
  });

  it('reserving a key again replaces the earlier reservation; release frees it', () => {
    const res = new Reservations();
    res.reserve('n1', 'ws', 2, GiB);
    res.reserve('n2', 'ws', 1, GiB);
    assert.equal(res.size, 1);
    const [n1, n2] = res.apply([host('n1'), host('n2')]);
    assert.deepEqual([n1!.reservedCpus, n1!.workspaces, n2!.reservedCpus, n2!.workspaces], [0, 0, 1, 1]);
    assert.equal(res.release('ws'), true);
    assert.equal(res.release('ws'), false);
    assert.deepEqual(res.apply([host('n1'), host('n2')]), [host('n1'), host('n2')]);
  });

  it('placing the same key again does not count its own earlier reservation', () => {
    const res = new Reservations();
    const hosts = [host('n1', { cpus: 2 })];
    assert.deepEqual(res.place(hosts, 'ws', req({ cpus: 2 })), { ok: true, host: 'n1' });
    assert.deepEqual(res.place(hosts, 'ws', req({ cpus: 2 })), { ok: true, host: 'n1' });
    assert.equal(rejected(res.place(hosts, 'other', req({ cpus: 1 }))).reasons[0]!.reason, 'needs 1 cpu, 0 of 2 unreserved');
    res.release('ws');
    assert.deepEqual(res.place(hosts, 'other', req({ cpus: 1 })), { ok: true, host: 'n1' });
  });

  it('a failed place reserves nothing', () => {
    const res = new Reservations();
    rejected(res.place([host('n1', { cordoned: true })], 'ws', req()));
    assert.equal(res.size, 0);
  });
});

describe('purity', () => {
  it('schedule, decisionError and apply never mutate their input', () => {
    const hosts = deepFreeze([host('n1', { labels: { zone: 'a' } }), host('n2', { cordoned: true }), host('n3', { reservedCpus: 1 })]);
    const snapshot = structuredClone(hosts);
    for (const policy of ['spread', 'binpack'] as const) {
      for (const r of [req(), req({ host: 'n2' }), req({ host: 'x' }), req({ selector: { zone: 'a' } }), req({ cpus: 100 })]) {
        const d = schedule(hosts, deepFreeze(r), policy);
        if (!d.ok) decisionError(deepFreeze(d));
      }
    }
    const res = new Reservations();
    res.reserve('n1', 'ws', 1, GiB);
    const applied = res.apply(hosts);
    applied[0]!.labels['zone'] = 'changed';
    assert.deepEqual(hosts, snapshot);
  });
});
