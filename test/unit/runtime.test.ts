// The lifecycle table, the state store, and the in-process Runtime's create
// path over a fake native helper and fake cgroups: what it writes, and that
// a failure at any step removes what it made (and reports both errors when
// cleanup fails too).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import type { CgroupHandle, CgroupLimits, CgroupManager } from '../../agent/cgroups/cgroup.js';
import { assertLegal, isLegal, type Operation } from '../../agent/runtime/lifecycle.js';
import { DEFAULT_DEVICE_RULES } from '../../agent/runtime/defaults.js';
import { ALWAYS_ALLOWED_DEVICE_RULES } from '../../agent/runtime/devices.js';
import type { DeviceRule, Spec, Status } from '../../agent/runtime/oci.js';
import { decodePlan } from '../../agent/runtime/plan.js';
import { cgroupLimitsFromSpec, Runtime } from '../../agent/runtime/runtime.js';
import { FakeShimLauncher, reportToError } from '../../agent/runtime/shim.js';
import { checkId, stageAtomic, startTimeSync, StateStore } from '../../agent/runtime/store.js';
import { tempDir } from '../helpers/tmp.js';

describe('lifecycle', () => {
  const table: Array<[Operation, Status[]]> = [
    ['start', ['created']],
    ['kill', ['created', 'running']],
    ['delete', ['created', 'stopped']],
    ['force-delete', ['creating', 'created', 'running', 'stopped']],
    ['exec', ['running']],
    ['stop', ['created', 'running', 'stopped']],
  ];
  const all: Status[] = ['creating', 'created', 'running', 'stopped'];
  for (const [op, legal] of table) {
    for (const st of all) {
      it(`${op} when ${st}: ${legal.includes(st) ? 'legal' : 'FAILED_PRECONDITION'}`, () => {
        assert.equal(isLegal(st, op), legal.includes(st));
        if (legal.includes(st)) assertLegal('c1', st, op);
        else
          assert.throws(
            () => assertLegal('c1', st, op),
            (e: LxrError) => e.reason === 'LXR_ILLEGAL_STATE' && e.code === 9 && e.message.includes(`it is ${st}`) && e.message.includes('"c1"'),
          );
      });
    }
  }
});

describe('ids and the store', () => {
  for (const bad of ['', '-x', '.x', 'a/b', '../x', 'x'.repeat(65), 'a b', 'é']) {
    it(`refuses id ${JSON.stringify(bad)} naming the field`, () => {
      assert.throws(() => checkId(bad), (e: LxrError) => e.reason === 'LXR_INVALID_ARGUMENT' && e.field === 'id');
    });
  }
  it('claim is exclusive; read of a missing id is NOT_FOUND; a corrupt record is reported', async () => {
    const store = new StateStore(path.join(await tempDir('store'), 'root'));
    await store.claim('a');
    await assert.rejects(store.claim('a'), (e: LxrError) => e.reason === 'LXR_ALREADY_EXISTS');
    await assert.rejects(store.read('b'), (e: LxrError) => e.reason === 'LXR_NOT_FOUND');
    await writeFile(store.paths('a').state, '{not json');
    await assert.rejects(store.read('a'), (e: LxrError) => e.reason === 'LXR_INTERNAL' && /corrupt/.test(e.message));
    assert.deepEqual(await store.list(), ['a']);
    await store.remove('a');
    assert.deepEqual(await store.list(), []);
  });

  it('a staged write: on disk under a temporary name until commit, which puts it in place; discard drops it', async () => {
    const dir = await tempDir('stage');
    const file = path.join(dir, 'c1.json');
    await writeFile(file, 'old');
    const staged = stageAtomic(file, 'new', 0o600);
    const tmps = (await readdir(dir)).filter((f) => f !== 'c1.json');
    assert.equal(tmps.length, 1);
    assert.match(tmps[0]!, /^c1\.json\.[0-9a-f]{8}\.tmp$/, 'a name the repair removes');
    assert.equal(await readFile(path.join(dir, tmps[0]!), 'utf8'), 'new');
    assert.equal(await readFile(file, 'utf8'), 'old', 'nothing in place before commit');
    await staged.commit();
    assert.equal(await readFile(file, 'utf8'), 'new');
    assert.deepEqual(await readdir(dir), ['c1.json']);
    const dropped = stageAtomic(file, 'newer');
    await dropped.discard();
    assert.equal(await readFile(file, 'utf8'), 'new');
    assert.deepEqual(await readdir(dir), ['c1.json']);
    // Where the temporary file cannot be made, the stage fails at once.
    assert.throws(() => stageAtomic(path.join(dir, 'no', 'such.json'), 'x'), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  });
});

describe('helper reports map to the catalogue', () => {
  const cases: Array<[object, string]> = [
    [{ type: 'error', exitCode: 127, errno: 'ENOENT', message: 'x' }, 'LXR_EXEC_NOT_FOUND'],
    [{ type: 'error', exitCode: 126, errno: 'EACCES', message: 'x' }, 'LXR_EXEC_NOT_EXECUTABLE'],
    [{ type: 'error', errno: 'ENOENT', step: 'mount', message: 'x' }, 'LXR_INVALID_SPEC'],
    [{ type: 'error', errno: 'ENOENT', step: 'cwd', message: 'x' }, 'LXR_INVALID_SPEC'],
    [{ type: 'error', errno: 'ENOENT', step: 'mount overlay', message: 'x' }, 'LXR_NOT_FOUND'],
    [{ type: 'error', errno: 'EPERM', step: 'mount', message: 'x' }, 'LXR_PERMISSION_DENIED'],
    [{ type: 'error', errno: 'EBUSY', step: 'clone', message: 'x' }, 'LXR_HOST_SETUP_FAILED'],
    [{ type: 'error', errno: 'EPERM', step: 'sysctl', message: 'x' }, 'LXR_PERMISSION_DENIED'],
  ];
  for (const [r, reason] of cases) {
    it(`${JSON.stringify(r)} -> ${reason}`, () => {
      const e = reportToError(r as never, 'create');
      assert.equal(e.reason, reason);
      assert.match(e.message, /^create: /);
    });
  }
});

class FakeCgroups implements CgroupManager {
  constructor(readonly mode: 'v1' | 'v2' | 'hybrid' = 'v1') {}
  created: Array<[string, CgroupLimits]> = [];
  destroyed: string[] = [];
  failDestroy = false;
  failCreate: LxrError | null = null;
  async create(p: string, limits: CgroupLimits): Promise<CgroupHandle> {
    if (this.failCreate) throw this.failCreate;
    this.created.push([p, limits]);
    return this.handle(p);
  }
  async open(p: string): Promise<CgroupHandle> {
    return this.handle(p);
  }
  handle(p: string): CgroupHandle {
    return {
      path: p,
      procsFiles: [`/fake/memory/${p}/cgroup.procs`],
      mountSources: [{ hostDir: `/fake/memory/${p}`, subdir: 'memory', fsType: 'cgroup', data: 'memory' }],
      oomCounter: null,
      update: async () => {},
      stats: async () => {
        throw new Error('not in the fake');
      },
      killAll: async () => {},
      destroy: async () => {
        if (this.failDestroy) throw new Error('rmdir: EBUSY');
        this.destroyed.push(p);
      },
    };
  }
}

async function bundleWith(config: object): Promise<string> {
  const dir = await tempDir('bundle');
  await mkdir(path.join(dir, 'rootfs'));
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

const goodConfig = (): Spec => ({
  ociVersion: '1.0.2',
  root: { path: 'rootfs' },
  process: { user: { uid: 0, gid: 0 }, args: ['true'], cwd: '/' },
  linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }], resources: { memory: { limit: 1 << 26 }, pids: { limit: 10 } } },
});

/** A Runtime over a fake launcher and fake cgroups, with a good bundle. */
async function fakeRuntime() {
  const launcher = new FakeShimLauncher();
  const cgroups = new FakeCgroups();
  const root = path.join(await tempDir('rt'), 's');
  return { launcher, cgroups, root, rt: new Runtime({ root, cgroups, launcher }), bundle: await bundleWith(goodConfig()) };
}

/**
 * A live pid the fake's containers can have (they then read as alive): a
 * child of this test, ended after it, so a signal a regression sends to a
 * container never reaches the test runner.
 */
function liveChildPid(t: TestContext): number {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.after(() => void child.kill('SIGKILL'));
  return child.pid!;
}

describe('Runtime.create over fakes', () => {
  it('creates the cgroup with the spec’s limits, writes the plan, records the state', async (t) => {
    const root = path.join(await tempDir('rt'), 'state');
    const launcher = new FakeShimLauncher();
    const live = (launcher.nextPid = liveChildPid(t));
    const cgroups = new FakeCgroups();
    const rt = new Runtime({ root, cgroups, launcher, cgroupParent: 'par' });
    const bundle = await bundleWith(goodConfig());
    const st = await rt.create('c1', bundle, { stdio: { mode: 'log', path: '/x.log' } });
    assert.equal(st.id, 'c1');
    assert.equal(st.pid, live);
    assert.deepEqual(cgroups.created, [['par/c1', { memory: { limit: 1 << 26 }, pids: { limit: 10 } }]]);
    assert.equal(launcher.calls.length, 1);
    const plan = decodePlan(await readFile(launcher.calls[0]!.planFile));
    assert.deepEqual(plan.find((r) => r[0] === 'rootfs'), ['rootfs', path.join(bundle, 'rootfs')]);
    assert.deepEqual(plan.find((r) => r[0] === 'cgroup'), ['cgroup', '/fake/memory/par/c1/cgroup.procs']);
    assert.deepEqual(plan.find((r) => r[0] === 'stdio'), ['stdio', 'log', '/x.log']);
    const rec = await rt.store.read('c1');
    assert.equal(rec.cgroupPath, 'par/c1');
    assert.equal(rec.bundle, bundle);
    // the control socket does not exist in the fake, so the live pid reads as running
    assert.equal((await rt.state('c1')).status, 'running');
    await assert.rejects(rt.create('c1', bundle), (e: LxrError) => e.reason === 'LXR_ALREADY_EXISTS');
  });

  it('with start: the plan starts itself, started() tells how it went, and it reads as running at once', async (t) => {
    const launcher = new FakeShimLauncher();
    launcher.nextPid = liveChildPid(t);
    const rt = new Runtime({ root: path.join(await tempDir('rt'), 's'), cgroups: new FakeCgroups(), launcher });
    const bundle = await bundleWith(goodConfig());
    await rt.create('s1', bundle, { start: true });
    const { gate, ...hints } = launcher.calls[0]!.hints!;
    assert.deepEqual(hints, { viaServer: true, startsItself: true });
    assert.equal(await gate, true);
    const plan = decodePlan(await readFile(launcher.calls[0]!.planFile));
    assert.deepEqual(plan.filter((r) => r[0] === 'autostart' || r[0] === 'control'), [['autostart']]);
    await rt.started('s1');
    assert.equal((await rt.state('s1')).status, 'running');
    // Without start: a control socket, and nothing to ask started() about.
    await rt.create('s2', bundle);
    assert.deepEqual({ ...launcher.calls[1]!.hints, gate: undefined }, { viaServer: true, gate: undefined });
    assert.equal(decodePlan(await readFile(launcher.calls[1]!.planFile)).filter((r) => r[0] === 'control').length, 1);
    await assert.rejects(rt.started('s2'), (e: LxrError) => e.reason === 'LXR_INTERNAL' && /not created with start/.test(e.message));
    await assert.rejects(rt.started('nope'), (e: LxrError) => e.reason === 'LXR_INTERNAL');
  });

  it('with start: a start that fails is the start’s error, and the container stays', async (t) => {
    const launcher = new FakeShimLauncher();
    launcher.nextPid = liveChildPid(t);
    launcher.startWith = { type: 'error', step: 'exec', errno: 'ENOEXEC', errnum: 8, exitCode: 126, message: '/bin/x' };
    const rt = new Runtime({ root: path.join(await tempDir('rt'), 's'), cgroups: new FakeCgroups(), launcher });
    const st = await rt.create('f1', await bundleWith(goodConfig()), { start: true });
    assert.equal(st.id, 'f1');
    await assert.rejects(rt.started('f1'), (e: LxrError) => e.reason === 'LXR_EXEC_NOT_EXECUTABLE' && /start f1: exec: \/bin\/x/.test(e.message));
    assert.equal((await rt.store.read('f1')).id, 'f1', 'still recorded');
    // No report at all (the monitor went away): UNAVAILABLE, not a hang.
    launcher.startWith = null;
    const gone = new FakeShimLauncher();
    gone.nextPid = liveChildPid(t);
    const rt2 = new Runtime({ root: path.join(await tempDir('rt'), 's'), cgroups: new FakeCgroups(), launcher: gone });
    const original = gone.create.bind(gone);
    gone.create = async (plan, stdio, hints) => ({ ...(await original(plan, stdio, hints)), started: Promise.resolve(null) });
    await rt2.create('f2', await bundleWith(goodConfig()), { start: true });
    await assert.rejects(rt2.started('f2'), (e: LxrError) => e.reason === 'LXR_UNAVAILABLE' && /went away before it reported the start/.test(e.message));
  });

  it('a spec handed over is validated like config.json, not read from the bundle', async () => {
    const launcher = new FakeShimLauncher();
    const rt = new Runtime({ root: path.join(await tempDir('rt'), 's'), cgroups: new FakeCgroups(), launcher });
    const bundle = await tempDir('nocfg'); // no config.json at all
    await rt.create('m1', bundle, { spec: goodConfig() });
    assert.deepEqual(decodePlan(await readFile(launcher.calls[0]!.planFile)).find((r) => r[0] === 'rootfs'), ['rootfs', path.join(bundle, 'rootfs')]);
    const bad = goodConfig();
    bad.process!.args = [];
    await assert.rejects(rt.create('m2', bundle, { spec: bad }), (e: LxrError) => e.reason === 'LXR_INVALID_SPEC' && e.field === 'process.args');
    await assert.rejects(rt.create('m3', 'relative/dir', { spec: goodConfig() }), (e: LxrError) => e.reason === 'LXR_INVALID_ARGUMENT' && e.field === 'bundle');
    assert.equal(launcher.calls.length, 1);
  });

  it('the caller\'s work meanwhile: begun once the plan is handed over, finished before create returns, and its failure fails the create', async () => {
    const { launcher, cgroups, root, rt, bundle } = await fakeRuntime();
    const seen: string[] = [];
    await rt.create('w1', bundle, {
      meanwhile: async () => {
        seen.push(`begun after ${launcher.calls.length} launch`);
        await new Promise((r) => setTimeout(r, 20));
        seen.push('done');
      },
    });
    assert.deepEqual(seen, ['begun after 1 launch', 'done']);
    // The "container" of a failed create is a child of this test: the cleanup SIGKILLs it.
    const victim = () => {
      const child = spawn('sleep', ['60'], { stdio: 'ignore' });
      launcher.nextPid = child.pid!;
      return new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_c, sig) => r(sig)));
    };
    let died = victim();
    await assert.rejects(rt.create('w2', bundle, { meanwhile: async () => { throw new Error('disk full'); } }), /disk full/);
    assert.equal(await died, 'SIGKILL');
    // One that throws before it returns a promise is the same failure, with the same cleanup.
    died = victim();
    const throwsAtOnce = (() => {
      throw new Error('no space');
    }) as unknown as () => Promise<void>;
    await assert.rejects(rt.create('w2b', bundle, { meanwhile: throwsAtOnce }), /no space/);
    assert.equal(await died, 'SIGKILL');
    assert.deepEqual(cgroups.destroyed, ['lxr/w2', 'lxr/w2b']);
    assert.deepEqual(await readdir(root), ['w1'], 'the failed one is gone');
    // A launch that fails waits for the work meanwhile before it reports.
    launcher.failWith = { type: 'error', step: 'mount', errno: 'ENOENT', message: 'gone' };
    let finished = false;
    await assert.rejects(rt.create('w3', bundle, { meanwhile: async () => { await new Promise((r) => setTimeout(r, 20)); finished = true; } }), /gone/);
    assert.equal(finished, true);
    // Both failed: the launch's error, naming the other too.
    await assert.rejects(rt.create('w4', bundle, { meanwhile: async () => { throw new Error('disk full'); } }), (e: LxrError) => /gone/.test(e.message) && /the work meanwhile also failed: disk full/.test(e.message));
  });

  it('through the helper server the plan is gated: the gate opens once the cgroup is made, and a cgroup that cannot be made calls the monitor off', async () => {
    const { launcher, cgroups, root, rt, bundle } = await fakeRuntime();
    // What the cgroup sees when it is made: the plan already with the helper, its gate still shut.
    const seen: string[] = [];
    const make = cgroups.create.bind(cgroups);
    cgroups.create = async (p, l) => {
      let shut = true;
      void launcher.calls.at(-1)?.hints?.gate?.then(() => (shut = false));
      await Promise.resolve();
      seen.push(`${launcher.calls.length} launched, gate ${shut ? 'shut' : 'open'}`);
      return make(p, l);
    };
    await rt.create('g1', bundle);
    assert.deepEqual(seen, ['1 launched, gate shut']);
    const plan = decodePlan(await readFile(launcher.calls[0]!.planFile));
    assert.deepEqual(plan.filter((r) => r[0] === 'gate'), [['gate']]);
    assert.deepEqual(plan.find((r) => r[0] === 'cgroup'), ['cgroup', '/fake/memory/lxr/g1/cgroup.procs'], 'planned before the cgroup was made');
    assert.deepEqual(cgroups.created.map(([p]) => p), ['lxr/g1']);
    cgroups.failCreate = new LxrError('LXR_INVALID_ARGUMENT', 'cgroup lxr/g2: the kernel refused pids.max', { field: 'linux.resources.pids.limit' });
    await assert.rejects(rt.create('g2', bundle), (e: LxrError) => e === cgroups.failCreate, 'the cgroup\'s error, not the called-off monitor\'s');
    assert.equal(await launcher.calls[1]!.hints!.gate, false, 'called off');
    assert.deepEqual(await readdir(root), ['g1']);
    // A helper that failed on its own as well (not called off): both are told, the cgroup's first.
    launcher.failWith = { type: 'error', step: 'read plan', errno: 'EIO', message: 'cannot read the plan' };
    await assert.rejects(rt.create('g2b', bundle), (e: LxrError) => e.field === 'linux.resources.pids.limit' && /refused pids\.max; the helper also failed: .*cannot read the plan/.test(e.message));
    launcher.failWith = null;
    assert.deepEqual(await readdir(root), ['g1']);
    // A process that joins a pid namespace is created by its own helper: no gate, the cgroup first.
    cgroups.failCreate = null;
    const joins = goodConfig();
    joins.linux!.namespaces = [{ type: 'pid', path: '/proc/1/ns/pid' }, { type: 'mount' }];
    await rt.create('g3', await bundleWith(joins));
    assert.equal(launcher.calls.at(-1)!.hints!.gate, undefined);
    assert.deepEqual(decodePlan(await readFile(launcher.calls.at(-1)!.planFile)).filter((r) => r[0] === 'gate'), []);
  });

  it('an explicit cgroupsPath is used as given (leading slash dropped)', async () => {
    const cgroups = new FakeCgroups();
    const rt = new Runtime({ root: path.join(await tempDir('rt'), 's'), cgroups, launcher: new FakeShimLauncher() });
    const cfg = goodConfig();
    cfg.linux!.cgroupsPath = '/mine/x';
    await rt.create('c2', await bundleWith(cfg));
    assert.equal(cgroups.created[0]![0], 'mine/x');
  });

  it('a helper failure removes the state dir and the cgroup, and keeps the helper’s error', async () => {
    const root = path.join(await tempDir('rt'), 'state');
    const launcher = new FakeShimLauncher();
    launcher.failWith = { type: 'error', step: 'mount', errno: 'ENOENT', message: 'bind on /x: source /nope' };
    const cgroups = new FakeCgroups();
    const rt = new Runtime({ root, cgroups, launcher });
    await assert.rejects(rt.create('c3', await bundleWith(goodConfig())), (e: LxrError) => e.reason === 'LXR_INVALID_SPEC' && e.field === 'mounts' && /source \/nope/.test(e.message));
    assert.deepEqual(cgroups.destroyed, ['lxr/c3']);
    assert.deepEqual(await readdir(root), []);
  });

  it('when cleanup fails too, both errors are reported', async () => {
    const launcher = new FakeShimLauncher();
    launcher.failWith = { type: 'error', step: 'exec', errno: 'ENOENT', exitCode: 127, message: 'nope: executable file not found in $PATH' };
    const cgroups = new FakeCgroups();
    cgroups.failDestroy = true;
    const rt = new Runtime({ root: path.join(await tempDir('rt'), 's'), cgroups, launcher });
    await assert.rejects(rt.create('c4', await bundleWith(goodConfig())), (e: LxrError) => {
      assert.equal(e.reason, 'LXR_EXEC_NOT_FOUND');
      assert.match(e.message, /executable file not found/);
      assert.match(e.message, /cleanup also failed: rmdir: EBUSY/);
      return true;
    });
  });

  it('bad bundles: missing config, broken JSON, invalid field, relative path — nothing is left behind', async () => {
    const root = path.join(await tempDir('rt'), 'state');
    const cgroups = new FakeCgroups();
    const rt = new Runtime({ root, cgroups, launcher: new FakeShimLauncher() });
    const empty = await tempDir('empty');
    await assert.rejects(rt.create('b1', empty), (e: LxrError) => e.reason === 'LXR_NOT_FOUND' && /config\.json/.test(e.message));
    const broken = await tempDir('broken');
    await writeFile(path.join(broken, 'config.json'), '{"ociVersion":');
    await assert.rejects(rt.create('b2', broken), (e: LxrError) => e.reason === 'LXR_INVALID_SPEC' && e.field === 'config.json');
    const cfg = goodConfig();
    cfg.process!.args = [];
    await assert.rejects(rt.create('b3', await bundleWith(cfg)), (e: LxrError) => e.reason === 'LXR_INVALID_SPEC' && e.field === 'process.args');
    await assert.rejects(rt.create('b4', 'relative/bundle'), (e: LxrError) => e.reason === 'LXR_INVALID_ARGUMENT' && e.field === 'bundle');
    await assert.rejects(rt.create('../b5', empty), (e: LxrError) => e.field === 'id');
    assert.deepEqual(cgroups.created, []);
    assert.deepEqual(await readdir(root).catch(() => []), []);
  });

  it('operations on unknown containers are NOT_FOUND', async () => {
    const rt = new Runtime({ root: path.join(await tempDir('rt'), 's'), cgroups: null, launcher: new FakeShimLauncher() });
    for (const op of [() => rt.state('nope'), () => rt.start('nope'), () => rt.kill('nope'), () => rt.delete('nope'), () => rt.exec('nope', { user: { uid: 0, gid: 0 }, args: ['x'], cwd: '/' })]) {
      await assert.rejects(op(), (e: LxrError) => e.reason === 'LXR_NOT_FOUND' && e.code === 5);
    }
  });
});

describe('cgroupLimitsFromSpec', () => {
  it('maps memory, cpu and pids; leaves out what the spec does not set', () => {
    assert.deepEqual(cgroupLimitsFromSpec({ ociVersion: '1', linux: {} }), {});
    assert.deepEqual(
      cgroupLimitsFromSpec({ ociVersion: '1', linux: { resources: { memory: { limit: 100, swap: 200 }, cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0' }, pids: { limit: 5 } } } }),
      { memory: { limit: 100, swap: 200 }, cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0' }, pids: { limit: 5 } },
    );
  });

  // Every container gets the always-allowed devices after the spec's rules, each written once.
  const always = ALWAYS_ALLOWED_DEVICE_RULES.map((d) => ({ ...d, type: d.type ?? 'a' }));
  const null13 = { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' };
  const cases: Array<[string, DeviceRule[], DeviceRule[]]> = [
    ['deny all: all appended', [{ allow: false, access: 'rwm' }], [{ allow: false, access: 'rwm' }, ...always]],
    ["LXR's default (deny all, then every one of them): nothing appended", [...DEFAULT_DEVICE_RULES], [...DEFAULT_DEVICE_RULES]],
    ['one of them allowed after the deny: the others appended', [{ allow: false, access: 'rwm' }, null13], [{ allow: false, access: 'rwm' }, null13, ...always.filter((d) => !(d.major === 1 && d.minor === 3))]],
    ['allowed, then denied again: appended after the deny', [null13, { allow: false, type: 'c', major: 1, minor: 3, access: 'rwm' }], [null13, { allow: false, type: 'c', major: 1, minor: 3, access: 'rwm' }, ...always]],
  ];
  for (const [name, devices, want] of cases) {
    it(`device rules: ${name}`, () => {
      assert.deepEqual(cgroupLimitsFromSpec({ ociVersion: '1', linux: { resources: { devices } } }).devices, want);
    });
  }
});

describe('what the host cannot enforce is refused, not dropped', () => {
  it('CAP_MKNOD and linux.devices on a pure cgroup v2 host', async () => {
    const cgroups = new FakeCgroups('v2');
    const rt = new Runtime({ root: path.join(await tempDir('rt'), 's'), cgroups, launcher: new FakeShimLauncher() });
    const withMknod = goodConfig();
    withMknod.process!.capabilities = { bounding: ['CAP_MKNOD'], effective: ['CAP_MKNOD'], permitted: ['CAP_MKNOD'] };
    await assert.rejects(rt.create('v1', await bundleWith(withMknod)), (e: LxrError) => e.reason === 'LXR_UNSUPPORTED' && e.field === 'process.capabilities');
    const withDevice = goodConfig();
    withDevice.linux!.devices = [{ type: 'c', path: '/dev/fuse', major: 10, minor: 229 }];
    await assert.rejects(rt.create('v2', await bundleWith(withDevice)), (e: LxrError) => e.reason === 'LXR_UNSUPPORTED' && e.field === 'linux.devices');
    assert.deepEqual(cgroups.created, []);
    // the same specs are fine where the devices controller enforces the rules
    const hybrid = new Runtime({ root: path.join(await tempDir('rt'), 's'), cgroups: new FakeCgroups('hybrid'), launcher: new FakeShimLauncher() });
    await hybrid.create('h1', await bundleWith(withMknod));
  });

  const fields: Array<[string, (c: Spec) => void]> = [
    ['linux.resources.unified', (c) => (c.linux!.resources!.unified = { 'memory.high': '1M' })],
    ['linux.resources.memory.swappiness', (c) => (c.linux!.resources!.memory!.swappiness = 10)],
    ['linux.resources.memory.disableOOMKiller', (c) => (c.linux!.resources!.memory!.disableOOMKiller = true)],
    ['linux.resources.cpu.realtimeRuntime', (c) => (c.linux!.resources!.cpu = { realtimeRuntime: 1000 })],
    ['linux.seccomp.flags', (c) => (c.linux!.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_LOG'] })],
  ];
  for (const [field, edit] of fields) {
    it(`${field} is LXR_UNSUPPORTED naming the field`, async () => {
      const rt = new Runtime({ root: path.join(await tempDir('rt'), 's'), cgroups: new FakeCgroups(), launcher: new FakeShimLauncher() });
      const cfg = goodConfig();
      edit(cfg);
      await assert.rejects(rt.create('u1', await bundleWith(cfg)), (e: LxrError) => e.reason === 'LXR_UNSUPPORTED' && e.field === field);
      assert.deepEqual(await rt.store.list(), []);
    });
  }
});

describe('a claim left by a create that died', () => {
  it('is reclaimed when its creator is gone, refused while it lives', async () => {
    const store = new StateStore(path.join(await tempDir('store'), 'root'));
    await store.claim('a');
    // this process holds the claim: the id is taken
    await assert.rejects(store.claim('a'), (e: LxrError) => e.reason === 'LXR_ALREADY_EXISTS');
    // a dead creator (pid 2^22+1 is above pid_max's default ceiling) leaves it reclaimable
    await writeFile(path.join(store.paths('a').dir, 'claim'), String(4194305));
    assert.equal(store.staleClaim('a'), true);
    await store.claim('a', { cgroup: 'lxr/a' });
    assert.equal(await readFile(path.join(store.paths('a').dir, 'claim'), 'utf8'), `${process.pid} ${startTimeSync(process.pid)}\ncgroup lxr/a\n`);
    assert.equal(store.readNote('a', 'cgroup'), 'lxr/a');
    // a live pid with another start time is a reused pid: the creator is gone
    await writeFile(path.join(store.paths('a').dir, 'claim'), `${process.pid} 1`);
    assert.equal(store.staleClaim('a'), true);
    await writeFile(path.join(store.paths('a').dir, 'claim'), `${process.pid} ${startTimeSync(process.pid)}`);
    assert.equal(store.staleClaim('a'), false);
  });

  it('repair() removes stale claims with their cgroup, and leaves live containers alone', async () => {
    const cgroups = new FakeCgroups();
    const rt = new Runtime({ root: path.join(await tempDir('rt'), 's'), cgroups, launcher: new FakeShimLauncher() });
    await rt.create('live', await bundleWith(goodConfig()));
    // The cgroup noted in the claim (as this agent writes it), or in the file older agents wrote.
    await rt.store.claim('dead');
    await writeFile(path.join(rt.store.paths('dead').dir, 'claim'), `${4194305} 123\ncgroup lxr/dead\n`);
    await rt.store.claim('older');
    await writeFile(path.join(rt.store.paths('older').dir, 'claim'), String(4194305));
    await writeFile(path.join(rt.store.paths('older').dir, 'claim-cgroup'), 'lxr/older');
    assert.deepEqual((await rt.repair()).sort(), ['dead', 'older']);
    assert.deepEqual(await rt.store.list(), ['live']);
    assert.ok(cgroups.destroyed.includes('lxr/dead') && cgroups.destroyed.includes('lxr/older'), JSON.stringify(cgroups.destroyed));
    assert.deepEqual(await rt.repair(), []);
  });
});
