// The container lifecycle through the in-process API and the lxr-runtime
// command line: state transitions, illegal operations (FAILED_PRECONDITION
// naming the state), unknown/duplicate/invalid ids, stop with a grace
// period, kill, the monitor outliving its caller, the exit record and the
// CRI log, and create failures that leave nothing behind.

import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { access, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runtimeFixture } from '../helpers/runtime.js';
import { baseConfig } from '../helpers/runc-spec.js';
import { tempDir, uniqueId } from '../helpers/tmp.js';
import { assertNothingLeft, execProcess, processesMentioning, rejectsWith, sh, startContainer, T, until } from './runtime-common.js';

const fx = await runtimeFixture();

/** The compiled command line next to this compiled test (bin/lxr-runtime runs the same file from dist/). */
const CLI = fileURLToPath(new URL('../../agent/runtime/cli.js', import.meta.url));

async function created(script = 'sleep 30', opts: Parameters<typeof sh>[1] = {}): Promise<string> {
  const id = uniqueId('c');
  await fx.rt.create(id, await fx.bundle(sh(script, opts)));
  return id;
}

/** A live process (a zombie, dead but not yet reaped by its parent, is not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

describe('states', () => {
  test('created -> running -> stopped, then delete forgets the container', T, async () => {
    const id = await created();
    const s1 = await fx.rt.state(id);
    assert.equal(s1.status, 'created');
    assert.equal(s1.id, id);
    assert.ok(s1.pid! > 0 && alive(s1.pid!));
    await fx.rt.start(id);
    const s2 = await fx.rt.state(id);
    assert.equal(s2.status, 'running');
    assert.equal(s2.pid, s1.pid);
    await fx.rt.kill(id, 'SIGKILL');
    await fx.rt.wait(id);
    const s3 = await fx.rt.state(id);
    assert.equal(s3.status, 'stopped');
    assert.equal(s3.pid, undefined);
    assert.ok(!alive(s1.pid!));
    await fx.rt.delete(id);
    await rejectsWith(fx.rt.state(id), 'LXR_NOT_FOUND', new RegExp(id));
  });

  test('a container whose process exits by itself becomes stopped', T, async () => {
    const id = await created('exit 0');
    await fx.rt.start(id);
    assert.deepEqual(await fx.rt.wait(id), { exitCode: 0, signal: 0, oomKilled: false });
    assert.equal((await fx.rt.state(id)).status, 'stopped');
    await fx.rt.delete(id);
  });

  test('list shows every container with its state', T, async () => {
    const a = await created();
    const b = await created();
    await fx.rt.start(b);
    try {
      const all = new Map((await fx.rt.list()).map((s) => [s.id, s.status]));
      assert.equal(all.get(a), 'created');
      assert.equal(all.get(b), 'running');
    } finally {
      await fx.rt.delete(a, { force: true });
      await fx.rt.delete(b, { force: true });
    }
  });

  test('deleting a created container kills its waiting init', T, async () => {
    const id = await created();
    const { pid } = await fx.rt.state(id);
    await fx.rt.delete(id);
    assert.ok(!alive(pid!));
    await assertNothingLeft(fx, id);
  });

  test('force-deleting a running container kills everything in it', T, async () => {
    const c = await startContainer(fx, sh('sleep 30 & sleep 30 & echo up; wait'));
    await until('the children to start', async () => (await c.output()).stdout.includes('up'));
    await fx.rt.delete(c.id, { force: true });
    assert.ok(!alive(c.pid));
    await assertNothingLeft(fx, c.id);
  });
});

describe('illegal transitions are FAILED_PRECONDITION naming the state', () => {
  test('start twice', T, async () => {
    const id = await created();
    await fx.rt.start(id);
    const e = await rejectsWith(fx.rt.start(id), 'LXR_ILLEGAL_STATE', /running/, new RegExp(id));
    assert.equal(e.code, 9);
    await fx.rt.delete(id, { force: true });
  });

  test('delete a running container without force', T, async () => {
    const id = await created();
    await fx.rt.start(id);
    await rejectsWith(fx.rt.delete(id), 'LXR_ILLEGAL_STATE', /running/);
    assert.equal((await fx.rt.state(id)).status, 'running', 'a refused delete changed the container');
    await fx.rt.delete(id, { force: true });
  });

  test('exec into a created or a stopped container', T, async () => {
    const id = await created('exit 0');
    await rejectsWith(fx.rt.exec(id, execProcess(['true'])), 'LXR_ILLEGAL_STATE', /created/);
    await fx.rt.start(id);
    await fx.rt.wait(id);
    await rejectsWith(fx.rt.exec(id, execProcess(['true'])), 'LXR_ILLEGAL_STATE', /stopped/);
    await fx.rt.delete(id);
  });

  test('kill or start a stopped container', T, async () => {
    const id = await created('exit 0');
    await fx.rt.start(id);
    await fx.rt.wait(id);
    await rejectsWith(fx.rt.kill(id, 'SIGTERM'), 'LXR_ILLEGAL_STATE', /stopped/);
    await rejectsWith(fx.rt.start(id), 'LXR_ILLEGAL_STATE', /stopped/);
    await fx.rt.delete(id);
  });
});

describe('ids', () => {
  test('operations on an unknown id are NOT_FOUND', T, async () => {
    const id = uniqueId('nope');
    await rejectsWith(fx.rt.state(id), 'LXR_NOT_FOUND', new RegExp(id));
    await rejectsWith(fx.rt.start(id), 'LXR_NOT_FOUND');
    await rejectsWith(fx.rt.kill(id, 'SIGTERM'), 'LXR_NOT_FOUND');
    await rejectsWith(fx.rt.delete(id), 'LXR_NOT_FOUND');
    await rejectsWith(fx.rt.delete(id, { force: true }), 'LXR_NOT_FOUND');
    await rejectsWith(fx.rt.exec(id, execProcess(['true'])), 'LXR_NOT_FOUND');
    await rejectsWith(fx.rt.stop(id, 100), 'LXR_NOT_FOUND');
    await rejectsWith(fx.rt.wait(id), 'LXR_NOT_FOUND');
  });

  test('a duplicate id is ALREADY_EXISTS and leaves the first container alone', T, async () => {
    const id = await created();
    const before = await fx.rt.state(id);
    await rejectsWith(fx.rt.create(id, await fx.bundle(sh('true'))), 'LXR_ALREADY_EXISTS', new RegExp(id));
    assert.deepEqual(await fx.rt.state(id), before);
    await fx.rt.start(id);
    assert.equal((await fx.rt.state(id)).status, 'running');
    await fx.rt.delete(id, { force: true });
  });

  test('invalid ids are refused before anything is made', T, async () => {
    const bundle = await fx.bundle(sh('true'));
    for (const bad of ['', '../escape', 'a/b', '-starts-with-dash', '.hidden', 'x'.repeat(65), 'spa ce', 'nul\0byte']) {
      const e = await rejectsWith(fx.rt.create(bad, bundle), 'LXR_INVALID_ARGUMENT');
      assert.equal(e.field, 'id', `id ${JSON.stringify(bad)}`);
      await rejectsWith(fx.rt.state(bad), 'LXR_INVALID_ARGUMENT');
    }
    assert.deepEqual(await fx.rt.list(), []);
    await access(path.join(fx.root, '..', 'escape')).then(
      () => assert.fail('a directory was made outside the state root'),
      () => {},
    );
  });
});

describe('stop and kill', () => {
  test('a process that ignores SIGTERM is SIGKILLed after the grace period', T, async () => {
    const c = await startContainer(fx, sh("trap '' TERM; echo trapped; while :; do sleep 1; done"));
    try {
      await until('the trap to be set', async () => (await c.output()).stdout.includes('trapped'));
      const exit = await fx.rt.stop(c.id, 300);
      assert.equal(exit.signal, 9);
      assert.equal(exit.exitCode, 137);
      assert.equal((await fx.rt.state(c.id)).status, 'stopped');
    } finally {
      await fx.rt.delete(c.id, { force: true });
    }
  });

  test('a process that exits on SIGTERM stops with its own status', T, async () => {
    // lxr-test-init forwards TERM to sleep, which dies of it: 128 + 15.
    const a = await startContainer(fx, baseConfig({ args: ['/sbin/lxr-test-init', 'sleep', '100'] }));
    // A handler decides its own exit code.
    const b = await startContainer(fx, sh("trap 'echo bye; exit 7' TERM; echo trapped; while :; do sleep 0.1; done"));
    try {
      await until('the handler to be set', async () => (await b.output()).stdout.includes('trapped'));
      assert.deepEqual(await fx.rt.stop(a.id, 20_000), { exitCode: 143, signal: 0, oomKilled: false });
      assert.deepEqual(await fx.rt.stop(b.id, 20_000), { exitCode: 7, signal: 0, oomKilled: false });
      assert.match((await b.output()).stdout, /bye\n$/);
      // stop on a stopped container answers with the recorded exit.
      assert.equal((await fx.rt.stop(b.id, 100)).exitCode, 7);
    } finally {
      await fx.rt.delete(a.id, { force: true });
      await fx.rt.delete(b.id, { force: true });
    }
  });

  test('kill delivers the given signal', T, async () => {
    const c = await startContainer(fx, sh("trap 'echo got-usr1; exit 3' USR1; echo trapped; while :; do sleep 0.1; done"));
    try {
      await until('the handler to be set', async () => (await c.output()).stdout.includes('trapped'));
      await fx.rt.kill(c.id, 'SIGUSR1');
      assert.equal((await fx.rt.wait(c.id)).exitCode, 3);
      assert.match((await c.output()).stdout, /got-usr1/);
    } finally {
      await fx.rt.delete(c.id, { force: true });
    }
  });

  test('kill by number, and a signal that does not exist', T, async () => {
    const c = await startContainer(fx, sh('sleep 30'));
    try {
      await rejectsWith(fx.rt.kill(c.id, 'SIGNOPE' as NodeJS.Signals), 'LXR_INVALID_ARGUMENT', /SIGNOPE/);
      await rejectsWith(fx.rt.kill(c.id, 4096), 'LXR_INVALID_ARGUMENT', /4096/);
      assert.equal((await fx.rt.state(c.id)).status, 'running');
      await fx.rt.kill(c.id, 9);
      assert.equal((await fx.rt.wait(c.id)).signal, 9);
    } finally {
      await fx.rt.delete(c.id, { force: true });
    }
  });
});

describe('the monitor and the command line', () => {
  /** Runs lxr-runtime; its stdio (which a created container inherits) goes to `out`. */
  function cli(args: string[], out: number): Promise<{ code: number | null }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [CLI, '--root', fx.root, ...args], { stdio: ['ignore', out, out] });
      child.on('error', reject);
      // 'exit', not 'close': the container keeps the inherited descriptors open.
      child.on('exit', (code) => resolve({ code }));
    });
  }

  test('a container created by a CLI process that has exited keeps running under its monitor', T, async () => {
    const id = uniqueId('c');
    const cfg = sh('echo hello-from-cli; sleep 30');
    // Under the fixture's cgroup parent, which it removes at the end.
    cfg.linux!.cgroupsPath = `${fx.cgroupParent}/${id}`;
    const bundle = await fx.bundle(cfg);
    const dir = await tempDir('cli');
    const outPath = path.join(dir, 'out');
    const out = openSync(outPath, 'w');
    try {
      const c = await cli(['create', '--bundle', bundle, '--pid-file', path.join(dir, 'pid'), id], out);
      assert.equal(c.code, 0, await readFile(outPath, 'utf8'));
      // The CLI is gone; the state is still "created" and the init waits.
      const st = await fx.rt.state(id);
      assert.equal(st.status, 'created');
      assert.equal(await readFile(path.join(dir, 'pid'), 'utf8'), String(st.pid));
      const rec = await fx.rt.store.read(id);
      assert.ok(alive(rec.monitorPid), 'the monitor died with the CLI');
      assert.equal((await cli(['start', id], out)).code, 0);
      assert.equal((await fx.rt.state(id)).status, 'running');
      await until('the container to print', async () => (await readFile(outPath, 'utf8')).includes('hello-from-cli'));
      // state through the CLI prints the OCI state JSON.
      const statePath = path.join(dir, 'state.json');
      const so = openSync(statePath, 'w');
      try {
        assert.equal((await cli(['state', id], so)).code, 0);
      } finally {
        closeSync(so);
      }
      const state = JSON.parse(await readFile(statePath, 'utf8')) as { id: string; status: string; pid: number; bundle: string };
      assert.deepEqual([state.id, state.status, state.pid, state.bundle], [id, 'running', st.pid, bundle]);
      assert.equal((await cli(['delete', id], out)).code, 1, 'delete of a running container without --force succeeded');
      assert.equal((await cli(['kill', id, 'KILL'], out)).code, 0);
      assert.equal((await fx.rt.wait(id)).signal, 9);
      assert.equal((await cli(['delete', id], out)).code, 0);
      await assertNothingLeft(fx, id);
      // The monitor exits right after it records the exit.
      await until('the monitor to exit', async () => !alive(rec.monitorPid));
    } finally {
      closeSync(out);
      await fx.rt.delete(id, { force: true }).catch(() => {});
    }
  });

  test('the exit record holds the code and the signal', T, async () => {
    const a = await created('exit 3');
    await fx.rt.start(a);
    await fx.rt.wait(a);
    const ra = JSON.parse(await readFile(fx.rt.store.paths(a).exit, 'utf8')) as Record<string, unknown>;
    assert.equal(ra.exitCode, 3);
    assert.equal(ra.signal, 0);
    assert.equal(ra.oomKilled, false);
    assert.equal(typeof ra.pid, 'number');
    assert.ok(!Number.isNaN(Date.parse(ra.exitedAt as string)));
    await fx.rt.delete(a);

    const b = await created();
    await fx.rt.start(b);
    await fx.rt.kill(b, 'SIGKILL');
    await fx.rt.wait(b);
    const rb = JSON.parse(await readFile(fx.rt.store.paths(b).exit, 'utf8')) as Record<string, unknown>;
    assert.equal(rb.exitCode, 137);
    assert.equal(rb.signal, 9);
    await fx.rt.delete(b);
  });

  test('a second Runtime on the same root (an agent restart) sees the state and can wait', T, async () => {
    const { Runtime } = await import('../../agent/runtime/runtime.js');
    const { createCgroupManager } = await import('../../agent/cgroups/index.js');
    const c = await startContainer(fx, sh('sleep 30'));
    const other = new Runtime({ root: fx.root, cgroups: await createCgroupManager(), cgroupParent: fx.cgroupParent });
    try {
      assert.equal((await other.state(c.id)).status, 'running');
      await other.kill(c.id, 'SIGKILL');
      assert.equal((await other.wait(c.id)).signal, 9);
      assert.equal((await fx.rt.state(c.id)).status, 'stopped');
    } finally {
      await other.delete(c.id, { force: true });
    }
  });
});

describe('the container log', () => {
  const LINE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([FP]) (.*)$/;

  test('every line is CRI: timestamp, stream, F or P tag, text', T, async () => {
    const c = await startContainer(fx, sh('echo out1; echo err1 >&2; echo; printf "no newline"'));
    await fx.rt.wait(c.id);
    const text = await readFile(c.log, 'utf8');
    await fx.rt.delete(c.id);
    const lines = text.split('\n');
    assert.equal(lines.pop(), '', 'the log ends with a newline');
    const parsed = lines.map((l) => {
      const m = LINE.exec(l);
      assert.ok(m, `not a CRI line: ${JSON.stringify(l)}`);
      assert.ok(!Number.isNaN(Date.parse(m[1]!)));
      return [m[2], m[3], m[4]];
    });
    const stdout = parsed.filter((p) => p[0] === 'stdout').map((p) => [p[1], p[2]]);
    const stderr = parsed.filter((p) => p[0] === 'stderr').map((p) => [p[1], p[2]]);
    assert.deepEqual(stdout, [['F', 'out1'], ['F', ''], ['F', 'no newline']]);
    assert.deepEqual(stderr, [['F', 'err1']]);
  });

  test('a line longer than the buffer goes out as P parts and a final F', T, async () => {
    const c = await startContainer(fx, sh("head -c 40000 /dev/zero | tr '\\0' a; echo"));
    await fx.rt.wait(c.id);
    const lines = (await readFile(c.log, 'utf8')).trim().split('\n').map((l) => LINE.exec(l)!);
    await fx.rt.delete(c.id);
    assert.ok(lines.length >= 3);
    assert.ok(lines.slice(0, -1).every((m) => m[3] === 'P'));
    assert.equal(lines.at(-1)![3], 'F');
    assert.equal(lines.map((m) => m[4]).join(''), 'a'.repeat(40000));
  });
});

describe('create failures leave nothing behind', () => {
  test('a missing binary: EXEC_NOT_FOUND, exit code 127, the binary named', T, async () => {
    for (const arg0 of ['/no/such/binary', 'no-such-command']) {
      const id = uniqueId('c');
      const e = await rejectsWith(fx.rt.create(id, await fx.bundle(baseConfig({ args: [arg0] }))), 'LXR_EXEC_NOT_FOUND', new RegExp(arg0));
      assert.equal((e as unknown as { exitCode: number }).exitCode, 127);
      assert.equal(e.code, 5);
      await assertNothingLeft(fx, id);
    }
  });

  test('a file without execute permission: EXEC_NOT_EXECUTABLE, exit code 126', T, async () => {
    const bundle = await fx.bundle(baseConfig({ args: ['/bin/not-executable'] }));
    await writeFile(path.join(bundle, 'rootfs', 'bin', 'not-executable'), '#!/bin/sh\necho hi\n');
    await chmod(path.join(bundle, 'rootfs', 'bin', 'not-executable'), 0o644);
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, bundle), 'LXR_EXEC_NOT_EXECUTABLE', /not-executable/);
    assert.equal((e as unknown as { exitCode: number }).exitCode, 126);
    await assertNothingLeft(fx, id);
  });

  test('a directory as the program: EXEC_NOT_EXECUTABLE', T, async () => {
    const id = uniqueId('c');
    await rejectsWith(fx.rt.create(id, await fx.bundle(baseConfig({ args: ['/etc'] }))), 'LXR_EXEC_NOT_EXECUTABLE', /\/etc/);
    await assertNothingLeft(fx, id);
  });

  test('a binary the user may not execute: EXEC_NOT_EXECUTABLE', T, async () => {
    const bundle = await fx.bundle(baseConfig({ args: ['/bin/root-only'], uid: 1000, gid: 1000 }));
    const bin = path.join(bundle, 'rootfs', 'bin', 'root-only');
    await writeFile(bin, '#!/bin/sh\necho hi\n');
    await chmod(bin, 0o700);
    const id = uniqueId('c');
    await rejectsWith(fx.rt.create(id, bundle), 'LXR_EXEC_NOT_EXECUTABLE', /root-only/);
    await assertNothingLeft(fx, id);
  });

  test('config.json that is not JSON: INVALID_SPEC naming config.json', T, async () => {
    const bundle = await fx.bundle(sh('true'));
    await writeFile(path.join(bundle, 'config.json'), '{ "ociVersion": "1.0.2", ');
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, bundle), 'LXR_INVALID_SPEC', /config\.json/);
    assert.equal(e.field, 'config.json');
    await assertNothingLeft(fx, id);
  });

  test('config.json with a field of the wrong type: INVALID_SPEC naming the field', T, async () => {
    const cases: Array<[string, (c: Record<string, any>) => void]> = [
      ['process.args', (c) => (c.process.args = 'sh -c true')],
      ['process.user.uid', (c) => (c.process.user.uid = -1)],
      ['root.path', (c) => delete c.root.path],
      ['linux.namespaces[0].type', (c) => (c.linux.namespaces[0].type = 'galaxy')],
      ['mounts[0].destination', (c) => delete c.mounts[0].destination],
      ['ociVersion', (c) => (c.ociVersion = '2.0.0')],
    ];
    for (const [field, breakIt] of cases) {
      const cfg = sh('true') as unknown as Record<string, any>;
      breakIt(cfg);
      const bundle = await fx.bundle(sh('true'));
      await writeFile(path.join(bundle, 'config.json'), JSON.stringify(cfg));
      const id = uniqueId('c');
      const e = await rejectsWith(fx.rt.create(id, bundle), 'LXR_INVALID_SPEC');
      assert.equal(e.field, field);
      assert.ok(e.message.includes(field), e.message);
      await assertNothingLeft(fx, id);
    }
  });

  test('a bundle without config.json is NOT_FOUND; a relative bundle path is INVALID_ARGUMENT', T, async () => {
    const empty = await tempDir('empty-bundle');
    const id = uniqueId('c');
    await rejectsWith(fx.rt.create(id, empty), 'LXR_NOT_FOUND', /config\.json/);
    await assertNothingLeft(fx, id);
    const e = await rejectsWith(fx.rt.create(id, 'relative/bundle'), 'LXR_INVALID_ARGUMENT');
    assert.equal(e.field, 'bundle');
    await assertNothingLeft(fx, id);
  });

  test('a rootfs that does not exist fails create and leaves nothing', T, async () => {
    const bundle = await tempDir('no-rootfs');
    await mkdir(path.join(bundle, 'other'));
    await writeFile(path.join(bundle, 'config.json'), JSON.stringify(sh('true')));
    const id = uniqueId('c');
    await rejectsWith(fx.rt.create(id, bundle), 'LXR_NOT_FOUND', /rootfs/);
    await assertNothingLeft(fx, id);
  });

  test('a terminal without a console socket is refused before anything is made', T, async () => {
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, await fx.bundle(baseConfig({ args: ['true'], terminal: true }))), 'LXR_INVALID_SPEC', /console/);
    assert.equal(e.field, 'process.terminal');
    await assertNothingLeft(fx, id);
    assert.deepEqual(await processesMentioning(path.join(fx.root, id)), []);
  });
});
