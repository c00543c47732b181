// Namespaces as the container sees them: its own pid, uts, ipc, net, mount
// and cgroup namespaces; joining another container's namespaces by path;
// and a user namespace with id mappings. Everything is observed from inside.

import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { chmod, readdir, readFile, readlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parseCriLog, runtimeFixture } from '../helpers/runtime.js';
import { baseConfig } from '../helpers/runc-spec.js';
import { tempDir, uniqueId } from '../helpers/tmp.js';
import { assertNothingLeft, rejectsWith, sh, startContainer, statusFields, T, until } from './runtime-common.js';

const execFileP = promisify(execFile);

/** The runtime's helper server: the `lxr-shim server` child of this process. */
async function helperServerPid(): Promise<number> {
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const stat = await readFile(`/proc/${d}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid !== process.pid) continue;
    const argv = (await readFile(`/proc/${d}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv[1] === 'server' && path.basename(argv[0]!) === 'lxr-shim') return Number(d);
  }
  throw new Error('no lxr-shim server runs for this process');
}

/** The spare network namespace the idle server sits in, once it has made one (it does after 10 ms idle). */
async function spareNetns(server: number): Promise<string> {
  const host = await readlink('/proc/self/ns/net');
  let ns = host;
  await until('the helper server to make a spare network namespace', async () => (ns = await readlink(`/proc/${server}/ns/net`)) !== host, 5000);
  return ns;
}
const fx = await runtimeFixture();

const NS = ['pid', 'uts', 'ipc', 'net', 'mnt', 'cgroup'] as const;

describe('new namespaces', () => {
  test('the init is pid 1 of its own pid namespace', T, async () => {
    const r = await fx.run(baseConfig({ args: ['/sbin/lxr-test-init', '--probe', 'pid'] }));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout.trim(), '1');
    const shell = await fx.run(sh('echo $$; ls /proc | grep -c "^[0-9]"'));
    // pid 1 (sh) and its children ls and grep: nothing of the host.
    const [pid, count] = shell.stdout.trim().split('\n');
    assert.equal(pid, '1');
    assert.ok(Number(count) <= 3, `the container sees ${count} processes`);
  });

  test('hostname and domainname are the container\'s and the host\'s stay as they were', T, async () => {
    const before = hostname();
    const cfg = sh('hostname; cat /proc/sys/kernel/domainname; uname -n', { hostname: 'box-7' });
    cfg.domainname = 'example.test';
    const r = await fx.run(cfg);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['box-7', 'example.test', 'box-7']);
    assert.equal(hostname(), before);
  });

  test('every namespace differs from the host\'s', T, async () => {
    const r = await fx.run(sh(NS.map((n) => `readlink /proc/self/ns/${n}`).join('; ')));
    assert.equal(r.exitCode, 0, r.stderr);
    const inside = r.stdout.trim().split('\n');
    assert.equal(inside.length, NS.length);
    for (const [i, n] of NS.entries()) {
      const host = await readlink(`/proc/self/ns/${n}`);
      assert.match(inside[i]!, new RegExp(`^${n}:\\[\\d+\\]$`));
      assert.notEqual(inside[i], host, `${n} namespace is the host's`);
    }
  });

  test('the network namespace has only lo', T, async () => {
    const r = await fx.run(sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'lo');
  });

  test('the ipc namespace is empty: a System V segment made inside stays inside', T, async () => {
    // The host's segments are invisible, so the table inside starts empty.
    const r = await fx.run(sh('tail -n +2 /proc/sysvipc/shm | wc -l'));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout.trim(), '0');
  });

  test('the mount namespace is private: the host does not see the container\'s mounts', T, async () => {
    const cfg = sh('grep -c " /proc " /proc/self/mountinfo; echo ready; sleep 30');
    cfg.mounts!.push({ destination: '/scratch', type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] });
    const bundle = await fx.bundle(cfg);
    const id = uniqueId('c');
    const log = path.join(await tempDir('log'), 'log');
    await fx.rt.create(id, bundle, { stdio: { mode: 'log', path: log } });
    try {
      await fx.rt.start(id);
      await until('the container to look', async () => (await readFile(log, 'utf8').catch(() => '')).includes('ready'));
      assert.match(parseCriLog(await readFile(log, 'utf8')).stdout, /^1\n/);
      // While it runs (its mounts exist), none of them shows in the host's table.
      const host = await readFile('/proc/self/mountinfo', 'utf8');
      assert.ok(!host.includes(bundle), 'a container mount shows on the host');
    } finally {
      await fx.rt.delete(id, { force: true });
    }
  });

  test('the cgroup namespace is rooted at the container\'s own cgroup', T, async () => {
    const r = await fx.run(sh('cat /proc/self/cgroup'));
    assert.equal(r.exitCode, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.ok(lines.length > 0);
    // "N:controllers:/" for every hierarchy: neither the host's path nor the parent's name shows.
    for (const line of lines) assert.match(line, /^\d+:[^:]*:\/$/, `cgroup line ${line}`);
    assert.ok(!r.stdout.includes(fx.cgroupParent));
  });

  test('its /sys/fs/cgroup mounts are that namespace\'s own (root /, as /proc/self/cgroup says), read-only, and show its own limits', T, async () => {
    const cfg = sh("grep ' /sys/fs/cgroup' /proc/self/mountinfo; echo ---; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max");
    cfg.linux!.resources = { pids: { limit: 77 } };
    const r = await fx.run(cfg);
    assert.equal(r.exitCode, 0, r.stderr);
    const [mounts, limit] = r.stdout.split('---\n');
    const cgroupMounts = mounts!.trim().split('\n').map((l) => l.split(' ')).filter((f) => /^cgroup2?$/.test(f[f.indexOf('-') + 1]!));
    assert.ok(cgroupMounts.length > 0, mounts);
    for (const f of cgroupMounts) {
      assert.equal(f[3], '/', `mounted at its namespace's root: ${f.join(' ')}`);
      assert.match(f[5]!, /(^|,)ro(,|$)/, `read-only: ${f.join(' ')}`);
    }
    assert.equal(limit!.trim(), '77');
  });
});

describe('joining namespaces by path', () => {
  test('a second container joins the first one\'s net, ipc, uts and pid namespaces', T, async () => {
    const a = await startContainer(fx, sh('sleep 30', { hostname: 'shared-uts' }));
    try {
      const joined = baseConfig({ args: ['sh', '-c', 'for n in net ipc uts pid; do readlink /proc/self/ns/$n; done; hostname; echo $$'] });
      delete joined.hostname; // a joined uts namespace keeps its name
      joined.linux!.namespaces = [
        { type: 'pid', path: `/proc/${a.pid}/ns/pid` },
        { type: 'network', path: `/proc/${a.pid}/ns/net` },
        { type: 'ipc', path: `/proc/${a.pid}/ns/ipc` },
        { type: 'uts', path: `/proc/${a.pid}/ns/uts` },
        { type: 'mount' },
        { type: 'cgroup' },
      ];
      const r = await fx.run(joined);
      assert.equal(r.exitCode, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      const expected = await Promise.all(['net', 'ipc', 'uts', 'pid'].map((n) => readlink(`/proc/${a.pid}/ns/${n}`)));
      assert.deepEqual(lines.slice(0, 4), expected);
      assert.equal(lines[4], 'shared-uts');
      assert.notEqual(lines[5], '1', 'a process that joined a pid namespace is not its init');
    } finally {
      await fx.rt.delete(a.id, { force: true });
    }
  });

  // The helper server keeps a fresh network namespace ready for the next
  // container (native/shim/server.c): it sits in it while idle, each goes to
  // exactly one container, and a container that asks for none, or joins one,
  // is not handed it.
  test('every container gets a network namespace of its own; one without keeps the host\'s; one joined by path is that one', T, async () => {
    const host = await readlink('/proc/self/ns/net');
    await fx.run(sh('true')); // the server runs from here on
    const server = await helperServerPid();
    const spare = await spareNetns(server);
    const a = await startContainer(fx, sh('sleep 30'));
    const na = await readlink(`/proc/${a.pid}/ns/net`);
    assert.equal(na, spare, 'the spare went to the next container');
    assert.notEqual(await readlink(`/proc/${server}/ns/net`), na, 'the server left it');
    await spareNetns(server);
    const b = await startContainer(fx, sh('sleep 30'));
    // Right after: with or without a spare made meanwhile, a namespace of its own.
    const c = await startContainer(fx, sh('sleep 30'));
    try {
      const [nb, nc] = await Promise.all([readlink(`/proc/${b.pid}/ns/net`), readlink(`/proc/${c.pid}/ns/net`)]);
      assert.equal(new Set([host, na, nb, nc]).size, 4, `all apart: ${[host, na, nb, nc].join(' ')}`);
      for (const pid of [a.pid, b.pid, c.pid]) {
        const links = (await readFile(`/proc/${pid}/net/dev`, 'utf8')).split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter(Boolean);
        assert.deepEqual(links, ['lo'], 'a fresh namespace has only lo');
      }
      const idleSpare = await spareNetns(server);
      const noNet = sh('readlink /proc/self/ns/net');
      noNet.linux!.namespaces = noNet.linux!.namespaces!.filter((n) => n.type !== 'network');
      const shared = await fx.run(noNet);
      assert.equal(shared.exitCode, 0, shared.stderr);
      assert.equal(shared.stdout.trim(), host, 'no network namespace asked for: the host\'s, not the spare');
      const joins = sh('readlink /proc/self/ns/net');
      joins.linux!.namespaces = joins.linux!.namespaces!.map((n) => (n.type === 'network' ? { type: 'network', path: `/proc/${a.pid}/ns/net` } : n));
      const joined = await fx.run(joins);
      assert.equal(joined.exitCode, 0, joined.stderr);
      assert.equal(joined.stdout.trim(), na);
      assert.equal(await readlink(`/proc/${server}/ns/net`), idleSpare, 'neither took the spare');
    } finally {
      for (const x of [a, b, c]) await fx.rt.delete(x.id, { force: true });
    }
  });

  test('a namespace path that does not exist fails create and leaves nothing', T, async () => {
    const cfg = sh('true');
    const missing = `/proc/999999999/ns/net`;
    cfg.linux!.namespaces = cfg.linux!.namespaces!.map((n) => (n.type === 'network' ? { type: 'network', path: missing } : n));
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_INVALID_SPEC', new RegExp(missing.replaceAll('/', '\\/')));
    assert.equal(e.field, 'linux.namespaces');
    await assertNothingLeft(fx, id);
  });

  test('a path that is not a namespace of that type fails create', T, async () => {
    const cfg = sh('true');
    // The host's uts namespace file is a namespace, but not a network one.
    cfg.linux!.namespaces = cfg.linux!.namespaces!.map((n) => (n.type === 'network' ? { type: 'network', path: '/proc/self/ns/uts' } : n));
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_INVALID_SPEC', /net/);
    assert.equal(e.errno, 'EINVAL');
    await assertNothingLeft(fx, id);
  });
});

describe('user namespace', () => {
  const HOST_ID = 100000;
  const SIZE = 65536;

  function usernsConfig(script: string) {
    const cfg = sh(script);
    cfg.linux!.namespaces!.push({ type: 'user' });
    cfg.linux!.uidMappings = [{ containerID: 0, hostID: HOST_ID, size: SIZE }];
    cfg.linux!.gidMappings = [{ containerID: 0, hostID: HOST_ID, size: SIZE }];
    return cfg;
  }

  /** The init binds the rootfs as the mapped root (host uid 100000): the
   *  directories above it must be searchable by others, as for runc. */
  async function mappedRootCanReach(bundle: string): Promise<void> {
    await chmod(path.dirname(bundle), 0o711);
    await chmod(bundle, 0o711);
  }

  async function usernsBundle(script: string): Promise<string> {
    const bundle = await fx.bundle(usernsConfig(script));
    await mappedRootCanReach(bundle);
    // The rootfs belongs to the mapped root, as an image unpacked for this container would.
    await execFileP('chown', ['-R', '-h', `${HOST_ID}:${HOST_ID}`, path.join(bundle, 'rootfs')]);
    return bundle;
  }

  test('container root is an unprivileged host id; the maps are as configured', T, async () => {
    const bundle = await usernsBundle('id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; stat -c %u:%g /bin/busybox; echo ready; sleep 30');
    const id = uniqueId('c');
    const log = path.join(path.dirname(bundle), `${id}.log`);
    await fx.run(sh('true')); // the helper server runs from here on
    const server = await helperServerPid();
    const spare = await spareNetns(server);
    const st = await fx.rt.create(id, bundle, { stdio: { mode: 'log', path: log } });
    try {
      // Its network namespace must belong to its own user namespace: not the server's spare.
      assert.notEqual(await readlink(`/proc/${st.pid}/ns/net`), spare);
      assert.equal(await readlink(`/proc/${server}/ns/net`), spare, 'the spare is still the next one\'s');
      await fx.rt.start(id);
      await until('the container to print', async () => (await readFile(log, 'utf8').catch(() => '')).includes('ready'));
      const out = parseCriLog(await readFile(log, 'utf8')).stdout.trim().split('\n');
      assert.equal(out[0], '0');
      assert.equal(out[1], '0');
      assert.deepEqual(out[2]!.trim().split(/\s+/), ['0', String(HOST_ID), String(SIZE)]);
      assert.deepEqual(out[3]!.trim().split(/\s+/), ['0', String(HOST_ID), String(SIZE)]);
      assert.equal(out[4], '0:0');
      // Seen from the host, the same process runs as the mapped id.
      const status = statusFields(await readFile(`/proc/${st.pid}/status`, 'utf8'));
      assert.deepEqual(status.get('Uid')!.split(/\s+/), Array(4).fill(String(HOST_ID)));
      assert.deepEqual(status.get('Gid')!.split(/\s+/), Array(4).fill(String(HOST_ID)));
      assert.notEqual(await readlink(`/proc/${st.pid}/ns/user`), await readlink('/proc/self/ns/user'));
    } finally {
      await fx.rt.delete(id, { force: true });
    }
  });

  test('a host directory owned by host root shows as the overflow id and stays unwritable', T, async () => {
    const hostDir = await tempDir('userns-bind');
    const cfg = usernsConfig('stat -c %u:%g /mnt/host; touch /mnt/host/x 2>&1 && echo written; true');
    cfg.mounts!.push({ destination: '/mnt/host', type: 'bind', source: hostDir, options: ['rbind', 'rw'] });
    const bundle = await fx.bundle(cfg);
    await mappedRootCanReach(bundle);
    await execFileP('chown', ['-R', '-h', `${HOST_ID}:${HOST_ID}`, path.join(bundle, 'rootfs')]);
    const id = uniqueId('c');
    const log = path.join(await tempDir('userns-log'), 'container.log');
    await fx.rt.create(id, bundle, { stdio: { mode: 'log', path: log } });
    try {
      await fx.rt.start(id);
      assert.equal((await fx.rt.wait(id)).exitCode, 0);
      const { stdout } = parseCriLog(await readFile(log, 'utf8'));
      const lines = stdout.trim().split('\n');
      assert.equal(lines[0], '65534:65534');
      assert.match(lines[1]!, /Permission denied/);
      assert.ok(!stdout.includes('written'));
      assert.deepEqual(await readdir(hostDir), []);
    } finally {
      await fx.rt.delete(id, { force: true });
    }
  });

  test('mappings without a user namespace are refused, naming the field', T, async () => {
    const cfg = sh('true');
    cfg.linux!.uidMappings = [{ containerID: 0, hostID: HOST_ID, size: 1 }];
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_INVALID_SPEC', /uidMappings/);
    assert.equal(e.field, 'linux.uidMappings');
    await assertNothingLeft(fx, id);
  });

  test('a new user namespace without mappings is refused', T, async () => {
    const cfg = sh('true');
    cfg.linux!.namespaces!.push({ type: 'user' });
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_INVALID_SPEC');
    assert.equal(e.field, 'linux.uidMappings');
    await assertNothingLeft(fx, id);
  });
});
