// buildSpec: Docker's command/env/user rules and the secure defaults, checked
// against a throwaway rootfs with its own /etc/passwd and /etc/group.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import {
  type ContainerRequest,
  type ImageConfig,
  DEFAULT_MASKED_PATHS,
  DEFAULT_PATH,
  DEFAULT_READONLY_PATHS,
  buildSpec,
  hostNofileHard,
  mergeEnv,
  resolveArgs,
  resolveInRootfs,
  resolveUser,
} from '../../agent/runtime/defaults.js';
import { DEFAULT_CAPABILITIES } from '../../agent/runtime/capabilities.js';
import { validateSpec } from '../../agent/runtime/validate.js';

const PASSWD = `root:x:0:0:root:/root:/bin/sh
# a comment line
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App User:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
broken-line
`;
const GROUP = `root:x:0:
wheel:x:10:root,app
audio:x:29:app
app:x:1000:
staff:x:50:
nogroup:x:65534:
`;

let rootfs: string;
let linked: string;

function isSpecError(field: string) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof LxrError, String(e));
    assert.equal(e.reason, 'LXR_INVALID_SPEC');
    assert.equal(e.field, field);
    return true;
  };
}

before(() => {
  rootfs = mkdtempSync(join(tmpdir(), 'lxr-defaults-'));
  mkdirSync(join(rootfs, 'etc'));
  writeFileSync(join(rootfs, 'etc/passwd'), PASSWD);
  writeFileSync(join(rootfs, 'etc/group'), GROUP);

  // An image whose /etc/passwd is an absolute symlink: it must resolve inside the rootfs.
  linked = mkdtempSync(join(tmpdir(), 'lxr-defaults-link-'));
  mkdirSync(join(linked, 'etc'));
  mkdirSync(join(linked, 'data'));
  writeFileSync(join(linked, 'data/passwd'), 'linked:x:4242:4242::/home/linked:/bin/sh\n');
  symlinkSync('/data/passwd', join(linked, 'etc/passwd'));
  symlinkSync('../../../../../../data/passwd', join(linked, 'etc/group'));
});

after(() => {
  rmSync(rootfs, { recursive: true, force: true });
  rmSync(linked, { recursive: true, force: true });
});

const opts = () => ({ rootfs, cgroupsPath: '/lxr/c1', nofileHard: 1 << 30 });

describe('resolveArgs (Docker Entrypoint/Cmd rules)', () => {
  const cases: Array<[string, ImageConfig, Pick<ContainerRequest, 'command' | 'entrypoint'>, string[]]> = [
    ['image Cmd only', { Cmd: ['sh'] }, {}, ['sh']],
    ['image Entrypoint only', { Entrypoint: ['/entry'] }, {}, ['/entry']],
    ['image Entrypoint + Cmd', { Entrypoint: ['/entry', '-v'], Cmd: ['serve'] }, {}, ['/entry', '-v', 'serve']],
    ['request command replaces Cmd', { Entrypoint: ['/entry'], Cmd: ['serve'] }, { command: ['test', '1'] }, ['/entry', 'test', '1']],
    ['request command without image Entrypoint', { Cmd: ['sh'] }, { command: ['ls', '-l'] }, ['ls', '-l']],
    ['request entrypoint drops image Cmd', { Entrypoint: ['/entry'], Cmd: ['serve'] }, { entrypoint: ['/bin/bash'] }, ['/bin/bash']],
    ['request entrypoint + command', { Entrypoint: ['/entry'], Cmd: ['serve'] }, { entrypoint: ['/bin/bash'], command: ['-c', 'id'] }, ['/bin/bash', '-c', 'id']],
    ['empty request entrypoint clears it, keeps Cmd', { Entrypoint: ['/entry'], Cmd: ['serve'] }, { entrypoint: [] }, ['serve']],
    ['empty request command keeps image Cmd', { Cmd: ['sh'] }, { command: [] }, ['sh']],
    ['null Entrypoint and Cmd from JSON', { Entrypoint: null, Cmd: ['sh'] }, {}, ['sh']],
  ];
  for (const [name, image, req, want] of cases) it(name, () => assert.deepEqual(resolveArgs(image, req), want));

  const empty: Array<[string, ImageConfig, Pick<ContainerRequest, 'command' | 'entrypoint'>]> = [
    ['nothing at all', {}, {}],
    ['null everything', { Entrypoint: null, Cmd: null }, {}],
    ['entrypoint cleared, no Cmd', { Entrypoint: ['/entry'] }, { entrypoint: [] }],
  ];
  for (const [name, image, req] of empty) {
    it(`empty result (${name}) names process.args`, () => assert.throws(() => resolveArgs(image, req), isSpecError('process.args')));
  }
});

describe('mergeEnv', () => {
  it('later layers win by key, in place; new keys append', () => {
    assert.deepEqual(mergeEnv(['A=1', 'B=2'], ['B=3', 'C=4'], ['A=5']), ['A=5', 'B=3', 'C=4']);
  });
  it('keeps "=" inside values', () => assert.deepEqual(mergeEnv(['X=a=b'], ['Y=']), ['X=a=b', 'Y=']));
  it('a bare KEY removes the key', () => assert.deepEqual(mergeEnv(['A=1', 'B=2'], ['A']), ['B=2']));
  it('rejects an empty key', () => assert.throws(() => mergeEnv(['=x']), isSpecError('process.env')));
});

describe('resolveUser', () => {
  const cases: Array<[string, string, { uid: number; gid: number; additionalGids: number[]; home: string }]> = [
    ['default is root with its groups', '', { uid: 0, gid: 0, additionalGids: [10], home: '/root' }],
    ['name', 'app', { uid: 1000, gid: 1000, additionalGids: [10, 29], home: '/home/app' }],
    ['uid in passwd', '1000', { uid: 1000, gid: 1000, additionalGids: [10, 29], home: '/home/app' }],
    ['uid not in passwd', '4321', { uid: 4321, gid: 0, additionalGids: [], home: '/' }],
    ['uid:gid', '1000:50', { uid: 1000, gid: 50, additionalGids: [], home: '/home/app' }],
    ['name:group', 'app:staff', { uid: 1000, gid: 50, additionalGids: [], home: '/home/app' }],
    ['name:gid', 'nobody:29', { uid: 65534, gid: 29, additionalGids: [], home: '/nonexistent' }],
    ['uid:group for an unknown uid', '5000:wheel', { uid: 5000, gid: 10, additionalGids: [], home: '/' }],
  ];
  for (const [name, spec, want] of cases) it(`${name} (${JSON.stringify(spec)})`, () => assert.deepEqual(resolveUser(rootfs, spec), want));

  const bad: Array<[string, string]> = [
    ['unknown name', 'ghost'],
    ['unknown group', 'app:ghosts'],
    ['empty group', 'app:'],
  ];
  for (const [name, spec] of bad) {
    it(`${name} (${JSON.stringify(spec)}) names process.user`, () => assert.throws(() => resolveUser(rootfs, spec), isSpecError('process.user')));
  }

  it('a name needs /etc/passwd; a uid does not', () => {
    const empty = mkdtempSync(join(tmpdir(), 'lxr-defaults-empty-'));
    try {
      assert.throws(() => resolveUser(empty, 'app'), isSpecError('process.user'));
      assert.deepEqual(resolveUser(empty, '7:8'), { uid: 7, gid: 8, additionalGids: [], home: '/' });
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('follows symlinks inside the rootfs, never out of it', () => {
    assert.equal(resolveInRootfs(linked, '/etc/passwd'), join(linked, 'data/passwd'));
    assert.equal(resolveInRootfs(linked, '/etc/group'), join(linked, 'data/passwd'));
    assert.equal(resolveUser(linked, 'linked').uid, 4242);
  });
});

describe('buildSpec', () => {
  const image: ImageConfig = {
    Entrypoint: ['/docker-entrypoint.sh'],
    Cmd: ['nginx', '-g', 'daemon off;'],
    Env: ['PATH=/opt/bin:/usr/bin:/bin', 'NGINX_VERSION=1.27', 'MODE=image'],
    WorkingDir: '/srv',
    User: 'app',
    Labels: { maintainer: 'x' },
  };
  const req: ContainerRequest = { id: 'c1', env: ['MODE=request', 'EXTRA=1'] };

  it('users of a rootfs that never changes (an unpacked layer) are looked up once; each spec gets its own copy', () => {
    const layer = mkdtempSync(join(tmpdir(), 'lxr-defaults-layer-'));
    try {
      mkdirSync(join(layer, 'etc'));
      writeFileSync(join(layer, 'etc/passwd'), 'app:x:1000:1000::/home/app:/bin/sh\n');
      writeFileSync(join(layer, 'etc/group'), 'extra:x:2000:app\n');
      const o = { rootfs: layer, cgroupsPath: '/lxr/c1', nofileHard: 1 << 30, rootfsImmutable: true };
      const first = buildSpec({ Cmd: ['sh'] }, { id: 'c1', user: 'app' }, o).process!.user;
      assert.deepEqual(first, { uid: 1000, gid: 1000, additionalGids: [2000] });
      first.additionalGids!.push(9);
      // A layer never changes: a change here is not seen, which shows the lookup was kept.
      writeFileSync(join(layer, 'etc/passwd'), 'app:x:1001:1001::/home/app:/bin/sh\n');
      assert.deepEqual(buildSpec({ Cmd: ['sh'] }, { id: 'c2', user: 'app' }, o).process!.user, { uid: 1000, gid: 1000, additionalGids: [2000] });
      // Without the promise, every spec reads the files again; a user not there is still refused.
      assert.equal(buildSpec({ Cmd: ['sh'] }, { id: 'c3', user: 'app' }, { ...o, rootfsImmutable: false }).process!.user.uid, 1001);
      assert.throws(() => buildSpec({ Cmd: ['sh'] }, { id: 'c4', user: 'nobody-here' }, o), (e: LxrError) => e.field === 'process.user');
    } finally {
      rmSync(layer, { recursive: true, force: true });
    }
  });

  it('passes validateSpec', () => {
    const spec = buildSpec(image, req, opts());
    assert.equal(validateSpec(JSON.parse(JSON.stringify(spec))).ociVersion, spec.ociVersion);
  });

  it('a minimal image and request pass validateSpec too', () => {
    const spec = buildSpec({ Cmd: ['sh'] }, { id: 'x'.repeat(80), tty: true, limits: { memoryBytes: 1 << 28, cpus: 1.5, pids: 100 } }, opts());
    validateSpec(JSON.parse(JSON.stringify(spec)));
  });

  it('combines the command, workdir and user', () => {
    const spec = buildSpec(image, req, opts());
    assert.deepEqual(spec.process?.args, ['/docker-entrypoint.sh', 'nginx', '-g', 'daemon off;']);
    assert.equal(spec.process?.cwd, '/srv');
    assert.deepEqual(spec.process?.user, { uid: 1000, gid: 1000, additionalGids: [10, 29] });
    const over = buildSpec(image, { id: 'c1', workdir: '/tmp', user: '0:0' }, opts());
    assert.equal(over.process?.cwd, '/tmp');
    assert.deepEqual(over.process?.user, { uid: 0, gid: 0, additionalGids: [] });
    assert.equal(buildSpec({ Cmd: ['sh'] }, { id: 'c' }, opts()).process?.cwd, '/');
  });

  it('merges env: defaults, then image, then request', () => {
    const spec = buildSpec(image, req, opts());
    assert.deepEqual(spec.process?.env, [
      'PATH=/opt/bin:/usr/bin:/bin',
      'HOSTNAME=c1',
      'NGINX_VERSION=1.27',
      'MODE=request',
      'EXTRA=1',
      'HOME=/home/app',
    ]);
    const tty = buildSpec({ Cmd: ['sh'] }, { id: 'c2', tty: true, hostname: 'dev' }, opts());
    assert.deepEqual(tty.process?.env, [`PATH=${DEFAULT_PATH}`, 'HOSTNAME=dev', 'TERM=xterm', 'HOME=/root']);
    assert.equal(tty.process?.terminal, true);
  });

  it('gives containerd 2.x default capabilities and nothing inheritable', () => {
    const caps = buildSpec(image, req, opts()).process?.capabilities;
    const want = [
      'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
      'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
    ];
    assert.deepEqual([...DEFAULT_CAPABILITIES].sort(), [...want].sort());
    assert.deepEqual(caps?.bounding, [...DEFAULT_CAPABILITIES]);
    assert.deepEqual(caps?.effective, [...DEFAULT_CAPABILITIES]);
    assert.deepEqual(caps?.permitted, [...DEFAULT_CAPABILITIES]);
    assert.deepEqual(caps?.inheritable, []);
    assert.deepEqual(caps?.ambient, []);
  });

  it('sets the secure process defaults', () => {
    const p = buildSpec(image, req, opts()).process;
    assert.equal(p?.noNewPrivileges, true);
    assert.deepEqual(p?.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 1048576, soft: 1048576 }]);
  });

  const limitCases: Array<[string, ContainerRequest['limits'], object]> = [
    ['no limits: pids default only', undefined, { pids: { limit: 4096 } }],
    ['memory', { memoryBytes: 512 * 1024 * 1024 }, { memory: { limit: 536870912 }, pids: { limit: 4096 } }],
    ['fractional cpus', { cpus: 0.5 }, { cpu: { quota: 50000, period: 100000 }, pids: { limit: 4096 } }],
    ['several cpus', { cpus: 2.25 }, { cpu: { quota: 225000, period: 100000 }, pids: { limit: 4096 } }],
    ['pids', { pids: 64 }, { pids: { limit: 64 } }],
  ];
  for (const [name, limits, want] of limitCases) {
    it(`limits -> resources: ${name}`, () => {
      const res = { ...buildSpec(image, { id: 'c', ...(limits ? { limits } : {}) }, opts()).linux?.resources };
      delete res.devices;
      assert.deepEqual(res, want);
    });
  }

  it('rejects too few cpus and a zero memory limit', () => {
    assert.throws(() => buildSpec(image, { id: 'c', limits: { cpus: 0 } }, opts()), isSpecError('linux.resources.cpu.quota'));
    assert.throws(() => buildSpec(image, { id: 'c', limits: { memoryBytes: 0 } }, opts()), isSpecError('linux.resources.memory.limit'));
  });

  it('denies devices by default except the standard ones', () => {
    const devices = buildSpec(image, req, opts()).linux?.resources?.devices ?? [];
    assert.deepEqual(devices[0], { allow: false, access: 'rwm' });
    assert.ok(devices.some((d) => d.allow && d.type === 'c' && d.major === 1 && d.minor === 3 && d.access === 'rwm'));
  });

  it('creates the namespaces, joining a given network namespace', () => {
    const ns = buildSpec(image, { id: 'c', network: { namespacePath: '/run/netns/c' } }, opts()).linux?.namespaces;
    assert.deepEqual(ns, [
      { type: 'pid' },
      { type: 'ipc' },
      { type: 'uts' },
      { type: 'mount' },
      { type: 'network', path: '/run/netns/c' },
      { type: 'cgroup' },
    ]);
  });

  it('mounts, masked and read-only paths match containerd', () => {
    const spec = buildSpec(image, req, opts());
    assert.deepEqual(
      spec.mounts?.map((m) => [m.destination, m.type, m.source, (m.options ?? []).join(',')]),
      [
        ['/proc', 'proc', 'proc', 'nosuid,noexec,nodev'],
        ['/dev', 'tmpfs', 'tmpfs', 'nosuid,strictatime,mode=755,size=65536k'],
        ['/dev/pts', 'devpts', 'devpts', 'nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5'],
        ['/dev/shm', 'tmpfs', 'shm', 'nosuid,noexec,nodev,mode=1777,size=65536k'],
        ['/dev/mqueue', 'mqueue', 'mqueue', 'nosuid,noexec,nodev'],
        ['/sys', 'sysfs', 'sysfs', 'nosuid,noexec,nodev,ro'],
        ['/sys/fs/cgroup', 'cgroup', 'cgroup', 'nosuid,noexec,nodev,relatime,ro'],
      ],
    );
    assert.deepEqual(spec.linux?.maskedPaths, [...DEFAULT_MASKED_PATHS]);
    assert.deepEqual(spec.linux?.readonlyPaths, [...DEFAULT_READONLY_PATHS]);
    assert.ok(spec.linux?.maskedPaths?.includes('/proc/kcore'));
    assert.ok(spec.linux?.readonlyPaths?.includes('/proc/sysrq-trigger'));
  });

  it('fills root, hostname, annotations, cgroup path and seccomp', () => {
    const spec = buildSpec(image, { id: 'c'.repeat(70), labels: { team: 'a' }, readonlyRootfs: true }, opts());
    assert.deepEqual(spec.root, { path: rootfs, readonly: true });
    assert.equal(spec.hostname, 'c'.repeat(63));
    assert.deepEqual(spec.annotations, { team: 'a' });
    assert.equal(spec.linux?.cgroupsPath, '/lxr/c1');
    assert.equal(spec.linux?.seccomp?.defaultAction, 'SCMP_ACT_ALLOW');
    assert.equal(spec.linux?.rootfsPropagation, undefined);
  });

  it('an unknown user names process.user', () => {
    assert.throws(() => buildSpec(image, { id: 'c', user: 'ghost' }, opts()), isSpecError('process.user'));
  });

  it('a relative image WorkingDir fails validation naming process.cwd', () => {
    assert.throws(() => buildSpec({ Cmd: ['sh'], WorkingDir: 'app' }, { id: 'c' }, opts()), isSpecError('process.cwd'));
  });
});

describe('NOFILE default follows what the host can hand on', () => {
  const limits = (hard: string) => `Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 ${hard}                files\n`;
  it('reads the hard limit from /proc/self/limits text', () => {
    assert.equal(hostNofileHard(limits('20000')), 20000);
    assert.equal(hostNofileHard(limits('unlimited')), 1048576);
    assert.equal(hostNofileHard('garbage'), 1048576);
  });
  it('caps the default at the host hard limit, never raises it', () => {
    const capped = buildSpec({ Cmd: ['sh'] }, { id: 'c' }, { rootfs, cgroupsPath: '/x', nofileHard: 20000 });
    assert.deepEqual(capped.process?.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 20000, soft: 20000 }]);
    const roomy = buildSpec({ Cmd: ['sh'] }, { id: 'c' }, { rootfs, cgroupsPath: '/x', nofileHard: 1 << 30 });
    assert.deepEqual(roomy.process?.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 1048576, soft: 1048576 }]);
  });
});
