// Seccomp tables (kernel action values, libseccomp arch names and operators)
// and what LXR's default profile lets a container do.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import {
  CLONE_NAMESPACE_FLAGS,
  defaultSeccompProfile,
  hostSeccompArches,
  seccompActionValue,
  seccompArchName,
  seccompOpValue,
  seccompVerdict,
} from '../../agent/runtime/seccomp.js';
import { validateSpec } from '../../agent/runtime/validate.js';

const ALLOW = 0x7fff0000;
const EPERM_RET = 0x00050001;
const ENOSYS_RET = 0x00050026;

describe('seccompActionValue', () => {
  const cases: Array<[string, number | undefined, number]> = [
    ['SCMP_ACT_KILL', undefined, 0x00000000],
    ['SCMP_ACT_KILL_THREAD', undefined, 0x00000000],
    ['SCMP_ACT_KILL_PROCESS', undefined, 0x80000000],
    ['SCMP_ACT_TRAP', undefined, 0x00030000],
    ['SCMP_ACT_ERRNO', undefined, 0x00050001],
    ['SCMP_ACT_ERRNO', 38, 0x00050026],
    ['SCMP_ACT_ERRNO', 0, 0x00050000],
    ['SCMP_ACT_ERRNO', 0x1ffff, 0x0005ffff],
    ['SCMP_ACT_TRACE', undefined, 0x7ff00001],
    ['SCMP_ACT_TRACE', 5, 0x7ff00005],
    ['SCMP_ACT_LOG', undefined, 0x7ffc0000],
    ['SCMP_ACT_ALLOW', undefined, 0x7fff0000],
  ];
  for (const [action, errno, want] of cases) {
    it(`${action}${errno === undefined ? '' : `(${errno})`} = 0x${want.toString(16)}`, () => {
      assert.equal(seccompActionValue(action, errno), want);
    });
  }

  it('values are unsigned 32-bit', () => assert.ok(seccompActionValue('SCMP_ACT_KILL_PROCESS') > 0));

  for (const bad of ['SCMP_ACT_NOTIFY', 'SCMP_ACT_BOGUS']) {
    it(`refuses ${bad} as an invalid spec`, () => {
      assert.throws(() => seccompActionValue(bad), (e: unknown) => e instanceof LxrError && e.reason === 'LXR_INVALID_SPEC');
    });
  }
});

describe('seccompArchName', () => {
  const cases: Array<[string, string]> = [
    ['SCMP_ARCH_X86_64', 'x86_64'],
    ['SCMP_ARCH_X86', 'x86'],
    ['SCMP_ARCH_X32', 'x32'],
    ['SCMP_ARCH_AARCH64', 'aarch64'],
    ['SCMP_ARCH_ARM', 'arm'],
    ['SCMP_ARCH_PPC64LE', 'ppc64le'],
    ['SCMP_ARCH_S390X', 's390x'],
    ['SCMP_ARCH_RISCV64', 'riscv64'],
    ['SCMP_ARCH_MIPSEL64N32', 'mipsel64n32'],
  ];
  for (const [oci, name] of cases) it(`${oci} -> ${name}`, () => assert.equal(seccompArchName(oci), name));
  it('rejects an unknown arch', () => assert.throws(() => seccompArchName('SCMP_ARCH_Z80'), LxrError));
});

describe('seccompOpValue', () => {
  const cases: Array<[string, number]> = [
    ['SCMP_CMP_NE', 1],
    ['SCMP_CMP_LT', 2],
    ['SCMP_CMP_LE', 3],
    ['SCMP_CMP_EQ', 4],
    ['SCMP_CMP_GE', 5],
    ['SCMP_CMP_GT', 6],
    ['SCMP_CMP_MASKED_EQ', 7],
  ];
  for (const [op, n] of cases) it(`${op} = ${n}`, () => assert.equal(seccompOpValue(op), n));
  it('rejects an unknown op', () => assert.throws(() => seccompOpValue('SCMP_CMP_LIKE'), LxrError));
});

describe('hostSeccompArches', () => {
  it('covers 32-bit and x32 on x86_64', () => assert.deepEqual(hostSeccompArches('x64'), ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']));
  it('covers arm on arm64', () => assert.deepEqual(hostSeccompArches('arm64'), ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']));
});

describe('defaultSeccompProfile', () => {
  const profile = defaultSeccompProfile('x64');

  it('allows by default for the host arches', () => {
    assert.equal(profile.defaultAction, 'SCMP_ACT_ALLOW');
    assert.deepEqual(profile.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  });

  it('is a valid OCI seccomp section', () => {
    validateSpec({ ociVersion: '1.2.0', root: { path: '/r' }, linux: { seccomp: profile } }, { requireProcess: false });
  });

  const denied = [
    'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module', 'reboot', 'swapon', 'acct',
    'settimeofday', 'clock_settime', 'bpf', 'perf_event_open', 'userfaultfd', 'open_by_handle_at', 'keyctl', 'add_key',
    'ptrace', 'process_vm_readv', 'mount', 'umount2', 'pivot_root', 'move_mount', 'fsopen', 'setns', 'unshare',
    'io_uring_setup', 'iopl', 'ioperm', 'syslog', 'pidfd_getfd',
  ];
  for (const call of denied) it(`denies ${call} with EPERM`, () => assert.equal(seccompVerdict(profile, call), EPERM_RET));

  const allowed = ['read', 'write', 'openat', 'execve', 'mmap', 'futex', 'adjtimex', 'personality', 'socket', 'fork', 'wait4'];
  for (const call of allowed) it(`allows ${call}`, () => assert.equal(seccompVerdict(profile, call), ALLOW));

  it('allows clone for fork and threads', () => {
    const SIGCHLD = 17n;
    const threadFlags = 0x3d0f00n; // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
    assert.equal(seccompVerdict(profile, 'clone', [SIGCHLD]), ALLOW);
    assert.equal(seccompVerdict(profile, 'clone', [threadFlags]), ALLOW);
  });

  for (const [name, flag] of Object.entries(CLONE_NAMESPACE_FLAGS)) {
    it(`denies clone with ${name}`, () => {
      assert.equal(seccompVerdict(profile, 'clone', [BigInt(flag) | 17n]), EPERM_RET);
    });
  }

  it('makes clone3 fail with ENOSYS so libc falls back to clone', () => {
    assert.equal(seccompVerdict(profile, 'clone3'), ENOSYS_RET);
  });
});
