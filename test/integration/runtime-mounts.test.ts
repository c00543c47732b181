// The container's filesystem tree, read from inside: the standard mounts
// and their options, bind mounts of host directories and files (rw and ro),
// pivot_root, a read-only root, rootfs propagation, masked and read-only
// paths, device nodes and /dev symlinks; and bad mounts failing cleanly.

import { strict as assert } from 'node:assert';
import { access, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { runtimeFixture } from '../helpers/runtime.js';
import { tempDir, uniqueId } from '../helpers/tmp.js';
import { assertNothingLeft, mountAt, parseMountinfo, rejectsWith, sh, T } from './runtime-common.js';

const fx = await runtimeFixture();

async function mountsOf(script = 'cat /proc/self/mountinfo', patch: (c: ReturnType<typeof sh>) => void = () => {}) {
  const cfg = sh(script);
  patch(cfg);
  const r = await fx.run(cfg);
  assert.equal(r.exitCode, 0, r.stderr);
  return parseMountinfo(r.stdout);
}

describe('standard mounts', () => {
  test('proc, sysfs, tmpfs, devpts, mqueue and cgroup are mounted with the configured options', T, async () => {
    const m = await mountsOf();
    const proc = mountAt(m, '/proc');
    assert.equal(proc.fstype, 'proc');
    const sys = mountAt(m, '/sys');
    assert.equal(sys.fstype, 'sysfs');
    for (const o of ['ro', 'nosuid', 'nodev', 'noexec']) assert.ok(sys.options.includes(o), `/sys lacks ${o}: ${sys.options}`);
    const dev = mountAt(m, '/dev');
    assert.equal(dev.fstype, 'tmpfs');
    assert.ok(dev.options.includes('nosuid'));
    assert.ok(dev.superOptions.includes('mode=755'), `${dev.superOptions}`);
    assert.ok(dev.superOptions.includes('size=65536k'), `${dev.superOptions}`);
    const pts = mountAt(m, '/dev/pts');
    assert.equal(pts.fstype, 'devpts');
    for (const o of ['nosuid', 'noexec']) assert.ok(pts.options.includes(o));
    for (const o of ['gid=5', 'mode=620', 'ptmxmode=666']) assert.ok(pts.superOptions.includes(o), `${pts.superOptions}`);
    const shm = mountAt(m, '/dev/shm');
    assert.equal(shm.fstype, 'tmpfs');
    for (const o of ['nosuid', 'nodev', 'noexec']) assert.ok(shm.options.includes(o));
    const mq = mountAt(m, '/dev/mqueue');
    assert.equal(mq.fstype, 'mqueue');
    for (const o of ['nosuid', 'nodev', 'noexec']) assert.ok(mq.options.includes(o));
    const cg = m.filter((x) => x.mountPoint.startsWith('/sys/fs/cgroup'));
    assert.ok(cg.length > 0);
    for (const x of cg) assert.ok(x.options.includes('ro'), `${x.mountPoint} is not read-only`);
    assert.ok(cg.some((x) => x.fstype === 'cgroup' || x.fstype === 'cgroup2'));
  });

  test('proc takes nosuid,nodev,noexec when configured', T, async () => {
    const m = await mountsOf(undefined, (c) => {
      c.mounts![0] = { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'nodev', 'noexec'] };
    });
    const proc = mountAt(m, '/proc');
    for (const o of ['nosuid', 'nodev', 'noexec']) assert.ok(proc.options.includes(o), `/proc lacks ${o}: ${proc.options}`);
  });

  test('a tmpfs with size and mode options', T, async () => {
    const m = await mountsOf('cat /proc/self/mountinfo', (c) => {
      c.mounts!.push({ destination: '/scratch', type: 'tmpfs', source: 'tmpfs', options: ['nodev', 'size=1m', 'mode=750'] });
    });
    const s = mountAt(m, '/scratch');
    assert.equal(s.fstype, 'tmpfs');
    assert.ok(s.options.includes('nodev'));
    assert.ok(s.superOptions.includes('size=1024k'), `${s.superOptions}`);
    assert.ok(s.superOptions.includes('mode=750'), `${s.superOptions}`);
  });

  test('devpts is a new instance: none of the host\'s ptys, a device of its own', T, async () => {
    const r = await fx.run(sh('ls /dev/pts; grep " /dev/pts " /proc/self/mountinfo'));
    assert.equal(r.exitCode, 0, r.stderr);
    const [ls, line] = r.stdout.trim().split('\n');
    assert.equal(ls, 'ptmx');
    const inside = line!.split(' ')[2];
    const hostDevs = (await readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .filter((l) => l.includes(' - devpts '))
      .map((l) => l.split(' ')[2]);
    assert.ok(!hostDevs.includes(inside), `the container shares a devpts instance (${inside}) with the host`);
  });
});

describe('bind mounts', () => {
  test('rw and ro binds of a host directory, and a bound file', T, async () => {
    const host = await tempDir('bind');
    await mkdir(path.join(host, 'rw'));
    await mkdir(path.join(host, 'ro'));
    await writeFile(path.join(host, 'ro', 'seen'), 'from the host\n');
    await writeFile(path.join(host, 'file.txt'), 'one file\n');
    const cfg = sh(
      [
        'echo written > /mnt/rw/out',
        'cat /mnt/ro/seen',
        'echo nope > /mnt/ro/new || true',
        'cat /etc/host-file.txt',
        'grep -E " /mnt/(rw|ro) " /proc/self/mountinfo',
      ].join('; '),
    );
    cfg.mounts!.push(
      { destination: '/mnt/rw', type: 'bind', source: path.join(host, 'rw'), options: ['rbind', 'rw'] },
      { destination: '/mnt/ro', type: 'bind', source: path.join(host, 'ro'), options: ['rbind', 'ro'] },
      { destination: '/etc/host-file.txt', type: 'bind', source: path.join(host, 'file.txt'), options: ['bind', 'ro'] },
    );
    const r = await fx.run(cfg);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /from the host\n/);
    assert.match(r.stderr, /\/mnt\/ro\/new: Read-only file system/);
    assert.match(r.stdout, /one file\n/);
    const m = parseMountinfo(r.stdout);
    assert.ok(mountAt(m, '/mnt/ro').options.includes('ro'));
    assert.ok(mountAt(m, '/mnt/rw').options.includes('rw'));
    assert.equal(await readFile(path.join(host, 'rw', 'out'), 'utf8'), 'written\n');
    assert.deepEqual((await readdir(path.join(host, 'ro'))).sort(), ['seen']);
  });

  test('a destination behind a symlink in the rootfs stays inside the rootfs', T, async () => {
    // /escape -> ../../<host dir> inside the rootfs must resolve to <rootfs>/<host dir>
    // (".." stops at the container's root), never to the host's directory.
    const hostTarget = await tempDir('escape-target');
    const src = await tempDir('escape-src');
    await writeFile(path.join(src, 'marker'), 'm');
    const cfg = sh('ls /escape/sub');
    cfg.root!.readonly = false;
    cfg.mounts!.push({ destination: '/escape/sub', type: 'bind', source: src, options: ['rbind', 'ro'] });
    const bundle = await fx.bundle(cfg);
    await symlink('../../../../../../..' + hostTarget, path.join(bundle, 'rootfs', 'escape'));
    await mkdir(path.join(bundle, 'rootfs', hostTarget), { recursive: true });
    const id = uniqueId('c');
    const log = path.join(await tempDir('log'), 'log');
    await fx.rt.create(id, bundle, { stdio: { mode: 'log', path: log } });
    try {
      await fx.rt.start(id);
      assert.equal((await fx.rt.wait(id)).exitCode, 0);
      assert.match(await readFile(log, 'utf8'), / stdout F marker\n/);
      assert.deepEqual(await readdir(hostTarget), [], 'the mount point was created on the host');
      await access(path.join(bundle, 'rootfs', hostTarget, 'sub'));
    } finally {
      await fx.rt.delete(id, { force: true });
    }
  });

  test('a bind mount whose source does not exist fails create, names the source and leaves nothing', T, async () => {
    const missing = path.join(await tempDir('missing'), 'not-there');
    const cfg = sh('true');
    cfg.mounts!.push({ destination: '/mnt/x', type: 'bind', source: missing, options: ['rbind'] });
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_INVALID_SPEC', new RegExp(missing));
    assert.equal(e.field, 'mounts');
    await assertNothingLeft(fx, id);
  });

  test('a mount destination that is not absolute is an invalid spec naming the field', T, async () => {
    const cfg = sh('true');
    cfg.mounts!.push({ destination: 'relative/dir', type: 'tmpfs', source: 'tmpfs' });
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_INVALID_SPEC');
    assert.match(e.field ?? '', /^mounts\[\d+\]\.destination$/);
    await assertNothingLeft(fx, id);
  });

  test('an unknown filesystem type fails create and leaves nothing', T, async () => {
    const cfg = sh('true');
    cfg.mounts!.push({ destination: '/mnt/x', type: 'nosuchfs', source: 'none' });
    const id = uniqueId('c');
    await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_INVALID_SPEC', /mount/, /\/mnt\/x/);
    await assertNothingLeft(fx, id);
  });
});

describe('the root filesystem', () => {
  test('pivot_root: / is the rootfs and the host\'s tree is gone', T, async () => {
    const cfg = sh('ls /; echo ---; cat /proc/self/mountinfo; echo ---; ls /tmp');
    const r = await fx.run(cfg);
    assert.equal(r.exitCode, 0, r.stderr);
    const [ls, mountinfo, tmp] = r.stdout.split('---\n');
    assert.deepEqual(ls!.trim().split('\n').sort(), ['bin', 'dev', 'etc', 'home', 'proc', 'root', 'run', 'sbin', 'sys', 'tmp', 'usr', 'var']);
    const m = parseMountinfo(mountinfo!);
    const root = mountAt(m, '/');
    // The rootfs bind is /, and it is the only mount of a host filesystem's root dir tree;
    // the host's own / (root "/" on the host's root device) is not mounted anywhere.
    assert.notEqual(root.root, '/');
    assert.ok(root.root.endsWith('/rootfs'), root.root);
    const hostRoot = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).find((x) => x.mountPoint === '/')!;
    assert.ok(!m.some((x) => x.source === hostRoot.source && x.root === '/'), 'the host root is still mounted');
    assert.ok(m.every((x) => x.mountPoint === '/' || x.mountPoint.startsWith('/')));
    // The fixture's temp dirs (under the host's /tmp) are not reachable.
    assert.equal(tmp!.trim(), '');
  });

  test('root.readonly makes / read-only; without it / is writable', T, async () => {
    const ro = await fx.run(sh(`touch /x 2>&1; awk '$5 == "/"' /proc/self/mountinfo`, { readonly: true }));
    assert.match(ro.stdout, /Read-only file system/);
    assert.ok(parseMountinfo(ro.stdout)[0]!.options.includes('ro'));
    const rw = await fx.run(sh(`touch /x && echo ok; awk '$5 == "/"' /proc/self/mountinfo`, { readonly: false }));
    assert.match(rw.stdout, /^ok\n/);
    assert.ok(parseMountinfo(rw.stdout)[0]!.options.includes('rw'));
  });

  const propagationCases: Array<[string | undefined, RegExp | null]> = [
    [undefined, null],
    ['shared', /^shared:\d+$/],
    ['rshared', /^shared:\d+$/],
    ['unbindable', /^unbindable$/],
    ['private', null],
  ];
  for (const [prop, expected] of propagationCases) {
    test(`rootfsPropagation ${prop ?? '(unset)'} shows in the optional fields of /`, T, async () => {
      const m = await mountsOf('cat /proc/self/mountinfo', (c) => {
        if (prop) c.linux!.rootfsPropagation = prop;
      });
      const root = mountAt(m, '/');
      if (expected === null) assert.deepEqual(root.optional, [], `/ has ${root.optional}`);
      else assert.ok(root.optional.some((o) => expected.test(o)), `/ has ${root.optional}`);
    });
  }

  test('an unknown rootfsPropagation is an invalid spec', T, async () => {
    const cfg = sh('true');
    cfg.linux!.rootfsPropagation = 'sideways';
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_INVALID_SPEC', /sideways/);
    assert.equal(e.field, 'linux.rootfsPropagation');
    await assertNothingLeft(fx, id);
  });
});

describe('masked and read-only paths', () => {
  test('masked files read empty, masked directories are empty read-only tmpfs', T, async () => {
    // /proc/kcore does not exist on every kernel; /proc/timer_list always has content on the host.
    assert.ok((await readFile('/proc/timer_list', 'utf8')).length > 0);
    const r = await fx.run(
      sh('wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; touch /sys/firmware/x 2>&1; grep -E " /sys/firmware | /proc/timer_list " /proc/self/mountinfo'),
    );
    assert.equal(r.exitCode, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines[0]!.trim(), '0');
    assert.equal(lines[1]!.trim(), '0');
    assert.match(lines[2]!, /Read-only file system/);
    const m = parseMountinfo(r.stdout);
    const fw = mountAt(m, '/sys/firmware');
    assert.equal(fw.fstype, 'tmpfs');
    assert.ok(fw.options.includes('ro'));
  });

  test('a masked path that does not exist is skipped', T, async () => {
    const cfg = sh('echo ran');
    cfg.linux!.maskedPaths!.push('/proc/no-such-entry');
    const r = await fx.run(cfg);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, 'ran\n');
  });

  test('read-only paths refuse writes (/proc/sys) and are read-only mounts', T, async () => {
    // kernel/hostname lives in the container's uts namespace: harmless even if the write went through.
    const r = await fx.run(sh('echo other > /proc/sys/kernel/hostname; hostname; grep -E " /proc/(sys|sysrq-trigger|bus|fs|irq) " /proc/self/mountinfo'));
    assert.match(r.stderr, /Read-only file system/);
    assert.match(r.stdout, /^runc$/m);
    const m = parseMountinfo(r.stdout);
    for (const p of ['/proc/sys', '/proc/sysrq-trigger', '/proc/bus', '/proc/fs', '/proc/irq']) {
      if (!m.some((x) => x.mountPoint === p)) continue; // absent on this kernel
      assert.ok(mountAt(m, p).options.includes('ro'), `${p} is not read-only`);
    }
    assert.ok(m.some((x) => x.mountPoint === '/proc/sys'));
  });
});

describe('devices', () => {
  test('the default device nodes have the right numbers and modes, and the /dev symlinks exist', T, async () => {
    const devs = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];
    const r = await fx.run(
      sh(`for d in ${devs.join(' ')}; do stat -c '%n %F %t %T %a' /dev/$d; done; for l in fd stdin stdout stderr ptmx; do echo /dev/$l $(readlink /dev/$l); done; echo x > /dev/null && head -c 4 /dev/zero | wc -c`),
    );
    assert.equal(r.exitCode, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.deepEqual(lines, [
      '/dev/null character special file 1 3 666',
      '/dev/zero character special file 1 5 666',
      '/dev/full character special file 1 7 666',
      '/dev/random character special file 1 8 666',
      '/dev/urandom character special file 1 9 666',
      '/dev/tty character special file 5 0 666',
      '/dev/fd /proc/self/fd',
      '/dev/stdin /proc/self/fd/0',
      '/dev/stdout /proc/self/fd/1',
      '/dev/stderr /proc/self/fd/2',
      '/dev/ptmx pts/ptmx',
      '4',
    ]);
  });

  test('a device from linux.devices is created with its numbers, mode and owner', T, async () => {
    const cfg = sh("stat -c '%F %t %T %a %u %g' /dev/fuse");
    cfg.linux!.devices = [{ type: 'c', path: '/dev/fuse', major: 10, minor: 229, fileMode: 0o600, uid: 1000, gid: 2000 }];
    const r = await fx.run(cfg);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'character special file a e5 600 1000 2000');
  });

  test('a device path outside /dev is an invalid spec', T, async () => {
    const cfg = sh('true');
    cfg.linux!.devices = [{ type: 'c', path: '/dev/../etc/evil', major: 1, minor: 3 }];
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_INVALID_SPEC');
    assert.equal(e.field, 'linux.devices[0].path');
    await assertNothingLeft(fx, id);
  });
});
