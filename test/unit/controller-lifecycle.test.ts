// The workspace lifecycle and request checks as tables: every pair of
// stored states against the transition table (written out here by hand, so
// a change to the machine has to be made twice, on purpose), every state
// against every operation, and the specs a create refuses, each naming its
// field, with the defaults and the idempotency comparison.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canTransition, checkOperation, checkTransition, OPERATIONS, TRANSITIONS, type Operation, type StoredState } from '../../controller/workspaces/lifecycle.js';
import { checkDnsLabel, normalizeSpec, sameSpec } from '../../controller/workspaces/validate.js';
import { Code, LxrError, type Reason } from '../../proto/shared/errors.js';
import type { WorkspaceSpec, WorkspaceState } from '../../proto/shared/controller-types.js';

const MiB = 1024 ** 2;

function throwsWith(fn: () => unknown, reason: Reason, pattern: RegExp, field?: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LxrError, `not an LxrError: ${String(e)}`);
    assert.equal(e.reason, reason, e.message);
    if (reason === 'LXR_ILLEGAL_STATE') assert.equal(e.code, Code.FAILED_PRECONDITION);
    assert.match(e.message, pattern);
    if (field !== undefined) assert.equal(e.field, field, e.message);
    return true;
  });
}

const STORED: readonly StoredState[] = ['Pending', 'Creating', 'Running', 'Stopped', 'Failed'];

describe('workspace lifecycle: transitions', () => {
  // [from, to, allowed]: all 25 pairs.
  const table: Array<[StoredState, StoredState, boolean]> = [
    ['Pending', 'Pending', false],
    ['Pending', 'Creating', true],
    ['Pending', 'Running', false],
    ['Pending', 'Stopped', false],
    ['Pending', 'Failed', true],
    ['Creating', 'Pending', true],
    ['Creating', 'Creating', true],
    ['Creating', 'Running', true],
    ['Creating', 'Stopped', false],
    ['Creating', 'Failed', true],
    ['Running', 'Pending', true],
    ['Running', 'Creating', false],
    ['Running', 'Running', false],
    ['Running', 'Stopped', true],
    ['Running', 'Failed', true],
    ['Stopped', 'Pending', true],
    ['Stopped', 'Creating', false],
    ['Stopped', 'Running', true],
    ['Stopped', 'Stopped', false],
    ['Stopped', 'Failed', true],
    ['Failed', 'Pending', true],
    ['Failed', 'Creating', false],
    ['Failed', 'Running', true],
    ['Failed', 'Stopped', true],
    ['Failed', 'Failed', false],
  ];

  it('the table covers every pair of stored states once', () => {
    assert.deepEqual(Object.keys(TRANSITIONS).sort(), [...STORED].sort());
    const pairs = new Set(table.map(([f, t]) => `${f}>${t}`));
    assert.equal(pairs.size, STORED.length ** 2);
  });

  for (const [from, to, allowed] of table) {
    it(`${from} -> ${to}: ${allowed ? 'allowed' : 'refused'}`, () => {
      assert.equal(canTransition(from, to), allowed);
      assert.equal(TRANSITIONS[from].includes(to), allowed);
      if (allowed) checkTransition('ws1', from, to);
      else throwsWith(() => checkTransition('ws1', from, to), 'LXR_ILLEGAL_STATE', new RegExp(`"ws1" cannot go from ${from} to ${to}`));
    });
  }
});

describe('workspace lifecycle: operations', () => {
  // [state, operation, answer]: 'illegal' is FAILED_PRECONDITION naming the state.
  const table: Array<[WorkspaceState, Operation, 'run' | 'noop' | 'illegal']> = [
    ['Pending', 'start', 'illegal'],
    ['Creating', 'start', 'illegal'],
    ['Running', 'start', 'noop'],
    ['Stopped', 'start', 'run'],
    ['Failed', 'start', 'run'],
    ['Unknown', 'start', 'illegal'],
    ['Pending', 'stop', 'illegal'],
    ['Creating', 'stop', 'illegal'],
    ['Running', 'stop', 'run'],
    ['Stopped', 'stop', 'noop'],
    ['Failed', 'stop', 'illegal'],
    ['Unknown', 'stop', 'illegal'],
  ];

  it('the table covers every state and operation', () => {
    assert.deepEqual(Object.keys(OPERATIONS).sort(), ['start', 'stop']);
    assert.equal(table.length, (STORED.length + 1) * 2);
  });

  for (const [state, op, answer] of table) {
    it(`${op} when ${state}: ${answer}`, () => {
      if (answer !== 'illegal') {
        assert.equal(checkOperation('ws1', state, op), answer);
        return;
      }
      throwsWith(() => checkOperation('ws1', state, op), 'LXR_ILLEGAL_STATE', new RegExp(`cannot ${op} workspace "ws1": it is ${state}`));
      if (state === 'Unknown') throwsWith(() => checkOperation('ws1', state, op), 'LXR_ILLEGAL_STATE', /NotReady/);
    });
  }
});

describe('workspace specs: refused, each naming its field', () => {
  const ok: Partial<WorkspaceSpec> = { name: 'ws1', image: 'alpine:3.20' };
  const cases: Array<[string, Partial<WorkspaceSpec> | null, string, RegExp]> = [
    ['no spec', null, 'spec', /required/],
    ['no name', { image: 'alpine' }, 'spec.name', /required/],
    ['name not a DNS label', { ...ok, name: 'ws_1' }, 'spec.name', /"ws_1" is not a DNS label/],
    ['name in uppercase', { ...ok, name: 'Ws1' }, 'spec.name', /not a DNS label/],
    ['name of 64 characters', { ...ok, name: 'a'.repeat(64) }, 'spec.name', /not a DNS label/],
    ['name starting with -', { ...ok, name: '-ws' }, 'spec.name', /not a DNS label/],
    ['name ending with -', { ...ok, name: 'ws-' }, 'spec.name', /not a DNS label/],
    ['empty image', { ...ok, image: '' }, 'spec.image', /required/],
    ['image with a space', { ...ok, image: 'alpine latest' }, 'spec.image', /is not an image reference/],
    ['pinned host not a DNS label', { ...ok, host: 'Node1' }, 'spec.host', /not a DNS label/],
    ['negative cpus', { ...ok, cpus: -1 }, 'spec.cpus', /-1: 0 \(best effort\) up to 1024/],
    ['cpus not a number', { ...ok, cpus: NaN }, 'spec.cpus', /NaN/],
    ['too many cpus', { ...ok, cpus: 1025 }, 'spec.cpus', /up to 1024/],
    ['memory below 4 MiB', { ...ok, memoryBytes: 4 * MiB - 1 }, 'spec.memory_bytes', /below the 4 MiB/],
    ['negative memory', { ...ok, memoryBytes: -1 }, 'spec.memory_bytes', /not a number of bytes/],
    ['fractional memory', { ...ok, memoryBytes: 4.5 * MiB + 0.5 }, 'spec.memory_bytes', /not a number of bytes/],
    ['env without =', { ...ok, env: ['A=1', 'NOVALUE'] }, 'spec.env[1]', /"NOVALUE" is not KEY=VALUE/],
    ['env with an empty key', { ...ok, env: ['=1'] }, 'spec.env[0]', /not KEY=VALUE/],
    ['command with NUL', { ...ok, command: ['sh', 'a\0b'] }, 'spec.command[1]', /without NUL/],
    ['host port published twice', { ...ok, ports: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }, { hostPort: 8080, containerPort: 81, protocol: '' }] }, 'spec.ports[1].host_port', /8080\/tcp is published twice/],
    ['protocol sctp', { ...ok, ports: [{ hostPort: 8080, containerPort: 80, protocol: 'sctp' }] }, 'spec.ports[0].protocol', /"sctp": tcp or udp/],
    ['host port 0', { ...ok, ports: [{ hostPort: 0, containerPort: 80, protocol: 'tcp' }] }, 'spec.ports[0].host_port', /0 is not a port/],
    ['container port 70000', { ...ok, ports: [{ hostPort: 8080, containerPort: 70000, protocol: 'udp' }] }, 'spec.ports[0].container_port', /70000 is not a port/],
    ['host port 70000', { ...ok, ports: [{ hostPort: 70000, containerPort: 80, protocol: 'tcp' }] }, 'spec.ports[0].host_port', /70000 is not a port/],
    ['reserved label prefix lxr.', { ...ok, labels: { team: 'a', 'lxr.workspace': 'x' } }, 'spec.labels', /"lxr\.workspace": the lxr\. prefix is reserved/],
    ['bad label key', { ...ok, labels: { 'a b': 'x' } }, 'spec.labels', /label key "a b"/],
    ['label value with a newline', { ...ok, labels: { a: 'x\ny' } }, 'spec.labels', /at most 256 printable/],
    ['reserved prefix in the host selector', { ...ok, hostSelector: { 'lxr.cluster': 'c' } }, 'spec.host_selector', /reserved/],
    ['architecture not a name', { ...ok, architecture: 'x86-64' }, 'spec.architecture', /not an architecture name/],
  ];
  for (const [title, spec, field, pattern] of cases) {
    it(title, () => throwsWith(() => normalizeSpec(spec), 'LXR_INVALID_ARGUMENT', new RegExp(`invalid argument ${field.replace(/[.[\]]/g, '\\$&')}: .*${pattern.source}`), field));
  }

  it('DNS labels: 1 and 63 characters, digits and inner dashes pass', () => {
    for (const v of ['a', '0', 'a'.repeat(63), 'ws-1', '1-2-3']) assert.equal(checkDnsLabel(v, 'name'), v);
    throwsWith(() => checkDnsLabel('', 'name'), 'LXR_INVALID_ARGUMENT', /required/, 'name');
    throwsWith(() => checkDnsLabel(undefined, 'spec.host'), 'LXR_INVALID_ARGUMENT', /required/, 'spec.host');
  });
});

describe('workspace specs: defaults and idempotency', () => {
  it('defaults are filled in', () => {
    assert.deepEqual(normalizeSpec({ name: 'ws1', image: 'alpine' }), {
      name: 'ws1',
      image: 'alpine',
      host: '',
      cpus: 0,
      memoryBytes: 0,
      env: [],
      ports: [],
      labels: {},
      command: [],
      hostSelector: {},
      architecture: '',
    });
  });

  it('a port without protocol is tcp; the same host port over tcp and udp is fine', () => {
    const s = normalizeSpec({ name: 'ws1', image: 'alpine', ports: [{ hostPort: 53, containerPort: 53, protocol: '' }, { hostPort: 53, containerPort: 53, protocol: 'udp' }] });
    assert.deepEqual(s.ports, [
      { hostPort: 53, containerPort: 53, protocol: 'tcp' },
      { hostPort: 53, containerPort: 53, protocol: 'udp' },
    ]);
  });

  it('memory 0 (best effort) and exactly 4 MiB pass', () => {
    assert.equal(normalizeSpec({ name: 'ws1', image: 'alpine', memoryBytes: 0 }).memoryBytes, 0);
    assert.equal(normalizeSpec({ name: 'ws1', image: 'alpine', memoryBytes: 4 * MiB }).memoryBytes, 4 * MiB);
  });

  const same: Array<[string, Partial<WorkspaceSpec>, Partial<WorkspaceSpec>, boolean]> = [
    ['defaults left out vs given', { name: 'ws1', image: 'alpine' }, { name: 'ws1', image: 'alpine', host: '', cpus: 0, env: [], labels: {} }, true],
    ['labels in another key order', { name: 'ws1', image: 'alpine', labels: { a: '1', b: '2' } }, { name: 'ws1', image: 'alpine', labels: { b: '2', a: '1' } }, true],
    ['host selector in another key order', { name: 'ws1', image: 'alpine', hostSelector: { zone: 'a', gpu: 'no' } }, { name: 'ws1', image: 'alpine', hostSelector: { gpu: 'no', zone: 'a' } }, true],
    ['spec fields in another order', { image: 'alpine', name: 'ws1', cpus: 1 }, { cpus: 1, name: 'ws1', image: 'alpine' }, true],
    ['another image', { name: 'ws1', image: 'alpine' }, { name: 'ws1', image: 'debian' }, false],
    ['other cpus', { name: 'ws1', image: 'alpine', cpus: 1 }, { name: 'ws1', image: 'alpine', cpus: 2 }, false],
    ['a label value differs', { name: 'ws1', image: 'alpine', labels: { a: '1' } }, { name: 'ws1', image: 'alpine', labels: { a: '2' } }, false],
    ['one label more', { name: 'ws1', image: 'alpine', labels: { a: '1' } }, { name: 'ws1', image: 'alpine', labels: { a: '1', b: '' } }, false],
    ['env in another order (order matters to a shell)', { name: 'ws1', image: 'alpine', env: ['A=1', 'B=2'] }, { name: 'ws1', image: 'alpine', env: ['B=2', 'A=1'] }, false],
  ];
  for (const [title, a, b, want] of same) {
    it(`sameSpec: ${title} -> ${want}`, () => {
      assert.equal(sameSpec(normalizeSpec(a), normalizeSpec(b)), want);
      assert.equal(sameSpec(normalizeSpec(b), normalizeSpec(a)), want);
    });
  }
});
