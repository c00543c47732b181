// Hardening found in review: what the container inherits from its monitor
// (signal state), monitor robustness against a silent control client,
// oversized id maps failing cleanly, and an init that re-executes the helper.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, symlink } from 'node:fs/promises';
import { createConnection } from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { runtimeFixture } from '../helpers/runtime.js';
import { tempDir, uniqueId } from '../helpers/tmp.js';
import { assertNothingLeft, execCapture, execProcess, rejectsWith, sh, statusFields, T, until } from './runtime-common.js';

describe('hardening', () => {
  test('the container starts with default signal dispositions and nothing blocked', T, async () => {
    const fx = await runtimeFixture();
    // grep runs as the init itself: a shell would change dispositions of its own.
    const cfg = sh('');
    cfg.process!.args = ['grep', '-E', '^(SigIgn|SigBlk):', '/proc/self/status'];
    const r = await fx.run(cfg);
    assert.equal(r.exitCode, 0, r.stderr);
    const f = statusFields(r.stdout);
    assert.equal(f.get('SigIgn'), '0000000000000000');
    assert.equal(f.get('SigBlk'), '0000000000000000');
  });

  test('a control client that connects and says nothing does not stop start', T, async () => {
    const fx = await runtimeFixture();
    const id = uniqueId('c');
    const bundle = await fx.bundle(sh('true'));
    await fx.rt.create(id, bundle, {});
    const silent = createConnection(path.join(fx.root, id, 'ctl.sock'));
    await new Promise<void>((resolve, reject) => silent.once('connect', resolve).once('error', reject));
    try {
      await fx.rt.start(id);
      assert.equal((await fx.rt.wait(id)).exitCode, 0);
    } finally {
      silent.destroy();
      await fx.rt.delete(id, { force: true });
    }
  });

  test('more id mappings than fit in one kernel write fail create cleanly', T, async () => {
    const fx = await runtimeFixture();
    // 300 lines pass validation (the kernel takes 340) but not the 4 KiB write.
    const maps = Array.from({ length: 300 }, (_, i) => ({ containerID: i * 10, hostID: 1_000_000 + i * 10, size: 10 }));
    const cfg = sh('true');
    cfg.linux!.namespaces!.push({ type: 'user' });
    cfg.linux!.uidMappings = maps;
    cfg.linux!.gidMappings = maps;
    const id = uniqueId('c');
    await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_HOST_SETUP_FAILED', /uid_map|mappings/);
    await assertNothingLeft(fx, id);
  });

  test('an init whose entrypoint is /proc/self/exe runs a sealed copy, never the host file', T, async () => {
    const fx = await runtimeFixture();
    // The image ships what the helper needs to run (its loader and libraries),
    // and its entrypoint re-executes the helper: "server" waits on stdin.
    const cfg = sh('');
    cfg.process!.args = ['/proc/self/exe', 'server'];
    const bundle = await fx.bundle(cfg);
    const rootfs = path.join(bundle, 'rootfs');
    for (const lib of ['/lib64/ld-linux-x86-64.so.2', '/lib/x86_64-linux-gnu/libc.so.6', '/lib/x86_64-linux-gnu/libseccomp.so.2']) {
      await mkdir(path.join(rootfs, path.dirname(lib)), { recursive: true });
      await copyFile(lib, path.join(rootfs, lib));
    }
    const fifo = path.join(bundle, 'stdin');
    execFileSync('mkfifo', [fifo]);
    const stdin = openSync(fifo, 'r+'); // held open: the helper's stdin never ends
    const id = uniqueId('c');
    try {
      await fx.rt.create(id, bundle, { stdio: { mode: 'inherit' }, stdioFds: [stdin, 'ignore', 'ignore'] });
      await fx.rt.start(id);
      let exe = '';
      await until('the init to run the helper', async () => {
        exe = (await execCapture(fx, id, execProcess(['readlink', '/proc/1/exe']))).stdout.trim();
        return exe !== '' && exe !== '/bin/busybox';
      });
      assert.match(exe, /^\/memfd:lxr-shim/, `PID 1 runs ${exe}`);
    } finally {
      closeSync(stdin);
      await fx.rt.delete(id, { force: true });
    }
  });

  test('a masked path that is a symlink masks the link, not its target', T, async () => {
    const fx = await runtimeFixture();
    const cfg = sh('cat /etc/passwd | head -1; cat /masked-link 2>&1 | head -1');
    cfg.linux!.maskedPaths = ['/masked-link'];
    const bundle = await fx.bundle(cfg);
    await symlink('/etc/passwd', path.join(bundle, 'rootfs', 'masked-link'));
    const id = uniqueId('c');
    const log = path.join(bundle, 'log');
    try {
      await fx.rt.create(id, bundle, { stdio: { mode: 'log', path: log } });
      await fx.rt.start(id);
      await fx.rt.wait(id);
      const out = await readFile(log, 'utf8');
      // /etc/passwd itself must still be the real file.
      assert.match(out, /stdout F root:x:0:0/);
    } catch (e) {
      // Refusing to mask through a symlink is also safe: the error names the path.
      assert.match(String(e), /masked-link/);
    } finally {
      await fx.rt.delete(id, { force: true }).catch(() => {});
      if (existsSync(log)) await rm(log);
    }
  });
});

describe('sysctls in a joined namespace', () => {
  test('are refused when the namespace joined by path is the host\'s', T, async () => {
    const fx = await runtimeFixture();
    const cfg = sh('true');
    cfg.linux!.namespaces = cfg.linux!.namespaces!.map((n) => (n.type === 'network' ? { type: 'network', path: '/proc/self/ns/net' } : n));
    cfg.linux!.sysctl = { 'net.ipv4.ip_forward': await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8').then((v) => v.trim()) };
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_INVALID_SPEC', /host/);
    assert.equal(e.field, 'linux.sysctl.net.ipv4.ip_forward');
    await assertNothingLeft(fx, id);
  });
});

describe('a monitor killed with -9', () => {
  test('does not leave wait() hanging: it ends with a clear error once the container is gone', T, async () => {
    const fx = await runtimeFixture();
    const id = uniqueId('c');
    await fx.rt.create(id, await fx.bundle(sh('sleep 30')), { stdio: { mode: 'log', path: path.join(await tempDir('log'), 'c.log') } });
    await fx.rt.start(id);
    const rec = await fx.rt.store.read(id);
    const waiting = fx.rt.wait(id);
    process.kill(rec.monitorPid, 'SIGKILL');
    process.kill(rec.pid, 'SIGKILL');
    await rejectsWith(waiting, 'LXR_INTERNAL', /without an exit record/);
    await fx.rt.delete(id, { force: true });
    await assertNothingLeft(fx, id);
  });
});
