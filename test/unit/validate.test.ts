// validateSpec: a complete valid config passes, and each broken config fails
// naming exactly the first offending field.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { validateSpec } from '../../agent/runtime/validate.js';

const DELETE = Symbol('delete');

/** Sets (or with DELETE removes) the value at a field path such as "mounts[1].destination". */
function change(root: object, path: string, value: unknown): void {
  const keys = path.match(/[^.[\]]+/g) ?? [];
  let node = root as Record<string, unknown>;
  for (const key of keys.slice(0, -1)) node = node[key] as Record<string, unknown>;
  const last = keys[keys.length - 1] ?? '';
  if (value === DELETE) delete node[last];
  else node[last] = value;
}

function validConfig(): Record<string, unknown> {
  return {
    ociVersion: '1.2.0',
    root: { path: 'rootfs', readonly: true },
    process: {
      terminal: true,
      consoleSize: { height: 24, width: 80 },
      user: { uid: 1000, gid: 1000, umask: 0o022, additionalGids: [10, 20] },
      args: ['/bin/sh', '-c', 'echo hi'],
      env: ['PATH=/usr/bin:/bin', 'EMPTY=', 'A=b=c'],
      cwd: '/home/user',
      capabilities: {
        bounding: ['CAP_CHOWN', 'CAP_KILL'],
        effective: ['CAP_CHOWN'],
        permitted: ['CAP_CHOWN', 'CAP_KILL'],
        inheritable: [],
        ambient: ['CAP_CHECKPOINT_RESTORE'],
      },
      rlimits: [
        { type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 },
        { type: 'RLIMIT_CORE', soft: 0, hard: 0 },
      ],
      noNewPrivileges: true,
      oomScoreAdj: -500,
    },
    hostname: 'box',
    domainname: 'example.test',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid'] },
      { destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind', 'ro'] },
    ],
    annotations: { 'org.example.key': 'value' },
    'org.example.extension': { anything: true },
    linux: {
      namespaces: [
        { type: 'pid' },
        { type: 'mount' },
        { type: 'uts' },
        { type: 'ipc' },
        { type: 'network', path: '/var/run/netns/x' },
        { type: 'user' },
        { type: 'cgroup' },
        { type: 'time' },
      ],
      uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
      gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
      devices: [
        { type: 'c', path: '/dev/fuse', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 },
        { type: 'p', path: '/dev/fifo' },
      ],
      cgroupsPath: '/lxr/box',
      resources: {
        devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }],
        memory: { limit: 536870912, reservation: -1, swap: -1, swappiness: 60 },
        cpu: { shares: 1024, quota: 50000, period: 100000, cpus: '0-2,4', mems: '0' },
        pids: { limit: 4096 },
        unified: { 'io.weight': '100' },
      },
      rootfsPropagation: 'rslave',
      seccomp: {
        defaultAction: 'SCMP_ACT_ERRNO',
        defaultErrnoRet: 1,
        architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_AARCH64'],
        flags: ['SECCOMP_FILTER_FLAG_LOG'],
        syscalls: [
          { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
          { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0, op: 'SCMP_CMP_EQ' }] },
          { names: ['clone'], action: 'SCMP_ACT_ERRNO', errnoRet: 1, args: [{ index: 0, value: 0x10000000, valueTwo: 0x10000000, op: 'SCMP_CMP_MASKED_EQ' }] },
        ],
      },
      sysctl: { 'net.ipv4.ip_forward': '1' },
      maskedPaths: ['/proc/kcore'],
      readonlyPaths: ['/proc/sys'],
    },
  };
}

function check(config: unknown, field: string): void {
  assert.throws(
    () => validateSpec(config),
    (e: unknown) => {
      assert.ok(e instanceof LxrError, `expected LxrError, got ${String(e)}`);
      assert.equal(e.reason, 'LXR_INVALID_SPEC');
      assert.equal(e.field, field);
      assert.ok(e.message.includes(field), `message ${JSON.stringify(e.message)} names ${field}`);
      return true;
    },
  );
}

describe('validateSpec', () => {
  it('accepts a complete valid config and returns it', () => {
    const cfg = validConfig();
    assert.equal(validateSpec(cfg), cfg);
  });

  it('accepts a minimal config', () => {
    validateSpec({ ociVersion: '1.0.2', root: { path: '/r' }, process: { user: { uid: 0, gid: 0 }, args: ['x'], cwd: '/' } });
  });

  it('allows a missing process when not creating', () => {
    validateSpec({ ociVersion: '1.0.0', root: { path: '/r' } }, { requireProcess: false });
  });

  it('accepts a joined user namespace without mappings', () => {
    const c = validConfig();
    change(c, 'linux.namespaces[5].path', '/proc/1/ns/user');
    change(c, 'linux.uidMappings', DELETE);
    change(c, 'linux.gidMappings', DELETE);
    validateSpec(c);
  });

  // [name, path to change, new value (DELETE removes it), expected field (defaults to the path)]
  const cases: Array<[string, string, unknown, string?]> = [
    ['ociVersion missing', 'ociVersion', DELETE],
    ['ociVersion not a string', 'ociVersion', 1],
    ['ociVersion 2.x', 'ociVersion', '2.0.0'],
    ['root missing', 'root', DELETE],
    ['root.path missing', 'root.path', DELETE],
    ['root.path not a string', 'root.path', 7],
    ['root.readonly not boolean', 'root.readonly', 'yes'],
    ['process missing', 'process', DELETE],
    ['process not an object', 'process', 'sh'],
    ['consoleSize width float', 'process.consoleSize.width', 80.5],
    ['user missing', 'process.user', DELETE],
    ['uid negative', 'process.user.uid', -1],
    ['gid a string', 'process.user.gid', '0'],
    ['additionalGids non-integer', 'process.user.additionalGids[1]', 'wheel'],
    ['args missing', 'process.args', DELETE],
    ['args empty', 'process.args', []],
    ['args not an array', 'process.args', '/bin/sh'],
    ['arg not a string', 'process.args[1]', 3],
    ['env without =', 'process.env[1]', 'NOEQUALS'],
    ['env with empty key', 'process.env[0]', '=value'],
    ['cwd missing', 'process.cwd', DELETE],
    ['cwd relative', 'process.cwd', 'home'],
    ['capability unknown', 'process.capabilities.bounding[2]', 'CAP_FLY'],
    ['capability without prefix', 'process.capabilities.ambient[0]', 'CHOWN'],
    ['rlimit unknown', 'process.rlimits[1].type', 'RLIMIT_FOO'],
    ['rlimit duplicate', 'process.rlimits[1].type', 'RLIMIT_NOFILE'],
    ['rlimit soft > hard', 'process.rlimits[0].soft', 8192],
    ['rlimit hard negative', 'process.rlimits[0].hard', -1],
    ['oomScoreAdj too low', 'process.oomScoreAdj', -1001],
    ['oomScoreAdj too high', 'process.oomScoreAdj', 1001],
    ['noNewPrivileges a string', 'process.noNewPrivileges', 'true'],
    ['hostname a number', 'hostname', 42],
    ['hostname without uts namespace', 'linux.namespaces', [{ type: 'user' }, { type: 'mount' }], 'hostname'],
    ['mounts not an array', 'mounts', {}],
    ['mount destination missing', 'mounts[1].destination', DELETE],
    ['mount destination relative', 'mounts[1].destination', 'data'],
    ['mount option not a string', 'mounts[0].options[1]', 1],
    ['mount type a number', 'mounts[0].type', 5],
    ['annotation value a number', 'annotations', { a: 1 }, 'annotations.a'],
    ['namespace unknown', 'linux.namespaces[1].type', 'filesystem'],
    ['namespace duplicate', 'linux.namespaces[3].type', 'pid'],
    ['namespace path relative', 'linux.namespaces[4].path', 'netns/x'],
    ['user ns without uid mappings', 'linux.uidMappings', DELETE],
    ['user ns without gid mappings', 'linux.gidMappings', DELETE],
    ['mappings without user ns', 'linux.namespaces', [{ type: 'uts' }, { type: 'mount' }], 'linux.uidMappings'],
    ['mapping size 0', 'linux.gidMappings[0].size', 0],
    ['mapping hostID negative', 'linux.uidMappings[0].hostID', -5],
    ['device type unknown', 'linux.devices[0].type', 'x'],
    ['device outside /dev', 'linux.devices[0].path', '/etc/fuse'],
    ['device escaping /dev', 'linux.devices[0].path', '/dev/../etc/passwd'],
    ['char device without major', 'linux.devices[0].major', DELETE],
    ['char device without minor', 'linux.devices[0].minor', DELETE],
    ['device cgroup access', 'linux.resources.devices[0].access', 'rwx'],
    ['memory limit 0', 'linux.resources.memory.limit', 0],
    ['memory limit float', 'linux.resources.memory.limit', 1.5],
    ['cpu shares 1', 'linux.resources.cpu.shares', 1],
    ['cpu quota float', 'linux.resources.cpu.quota', 0.5],
    ['cpu period 0', 'linux.resources.cpu.period', 0],
    ['cpuset syntax', 'linux.resources.cpu.cpus', '0-2;4'],
    ['cpuset reversed range', 'linux.resources.cpu.mems', '3-1'],
    ['pids limit a string', 'linux.resources.pids.limit', '100'],
    ['rootfsPropagation unknown', 'linux.rootfsPropagation', 'recursive'],
    ['seccomp defaultAction unknown', 'linux.seccomp.defaultAction', 'SCMP_ACT_DENY'],
    ['seccomp defaultErrnoRet with ALLOW', 'linux.seccomp.defaultAction', 'SCMP_ACT_ALLOW', 'linux.seccomp.defaultErrnoRet'],
    ['seccomp arch unknown', 'linux.seccomp.architectures[1]', 'SCMP_ARCH_Z80'],
    ['seccomp flag unknown', 'linux.seccomp.flags[0]', 'FAST'],
    ['syscall names empty', 'linux.seccomp.syscalls[0].names', []],
    ['syscall name empty', 'linux.seccomp.syscalls[0].names[1]', ''],
    ['syscall action unknown', 'linux.seccomp.syscalls[1].action', 'SCMP_ACT_MAYBE'],
    ['syscall arg op unknown', 'linux.seccomp.syscalls[1].args[0].op', 'SCMP_CMP_LIKE'],
    ['syscall arg index 6', 'linux.seccomp.syscalls[2].args[0].index', 6],
    ['syscall errnoRet with ALLOW', 'linux.seccomp.syscalls[0].errnoRet', 1],
    ['sysctl value a number', 'linux.sysctl', { 'net.core.somaxconn': 1024 }, 'linux.sysctl.net.core.somaxconn'],
    ['masked path relative', 'linux.maskedPaths[0]', 'proc/keys'],
    ['readonly path relative', 'linux.readonlyPaths[0]', 'sys'],
    ['linux not an object', 'linux', []],
  ];

  it('has at least 30 broken-config cases', () => assert.ok(cases.length >= 30));

  for (const [name, path, value, field = path] of cases) {
    it(`rejects ${name}, naming ${field}`, () => {
      const cfg = validConfig();
      change(cfg, path, value);
      check(cfg, field);
    });
  }

  it('rejects a config that is not an object, naming $', () => check([], '$'));

  it('reports the first offending field in document order', () => {
    const cfg = validConfig();
    change(cfg, 'process.cwd', 'relative');
    change(cfg, 'linux.namespaces[0].type', 'bogus');
    check(cfg, 'process.cwd');
  });
});

describe('ids the kernel reads as "unchanged" and oversized id maps', () => {
  it('uid/gid 4294967295 is refused naming the field', async () => {
    const { validateSpec } = await import('../../agent/runtime/validate.js');
    const cfg = (user: object) => ({ ociVersion: '1.0.2', root: { path: 'rootfs' }, process: { user, args: ['sh'], cwd: '/' } });
    for (const [user, field] of [[{ uid: 4294967295, gid: 0 }, 'process.user.uid'], [{ uid: 0, gid: 4294967295 }, 'process.user.gid'], [{ uid: 0, gid: 0, additionalGids: [4294967295] }, 'process.user.additionalGids[0]']] as const) {
      assert.throws(() => validateSpec(cfg(user)), (e: { field?: string }) => e.field === field);
    }
    assert.doesNotThrow(() => validateSpec(cfg({ uid: 4294967294, gid: 4294967294 })));
  });
  it('more than 340 id mappings are refused', async () => {
    const { validateSpec } = await import('../../agent/runtime/validate.js');
    const maps = Array.from({ length: 341 }, (_, i) => ({ containerID: i, hostID: 100000 + i, size: 1 }));
    const c = { ociVersion: '1.0.2', root: { path: 'rootfs' }, process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/' }, linux: { namespaces: [{ type: 'user' }], uidMappings: maps, gidMappings: maps.slice(0, 1) } };
    assert.throws(() => validateSpec(c), (e: { field?: string; message: string }) => e.field === 'linux.uidMappings' && /340/.test(e.message));
  });
});

describe('seccomp rules with more comparisons than a rule can hold', () => {
  it('are refused naming the field', async () => {
    const { validateSpec } = await import('../../agent/runtime/validate.js');
    const args = Array.from({ length: 7 }, (_, i) => ({ index: i % 6, value: 1, op: 'SCMP_CMP_EQ' }));
    const c = { ociVersion: '1.0.2', root: { path: 'rootfs' }, process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/' }, linux: { seccomp: { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args }] } } };
    assert.throws(() => validateSpec(c), (e: { field?: string }) => e.field === 'linux.seccomp.syscalls[0].args');
  });
});
