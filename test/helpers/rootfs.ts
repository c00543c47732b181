// Test root filesystems and OCI bundles: a minimal busybox rootfs (with users,
// groups and lxr-test-init) built once per process and copied per caller.

import { constants as fsConstants, existsSync, readFileSync, rmSync } from 'node:fs';
import { access, chmod, chown, copyFile, cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Spec } from '../../agent/runtime/oci.js';
import { ownedTempDir } from './tmp.js';

const execFileP = promisify(execFile);

export const HOST_BUSYBOX = '/bin/busybox';

/** Ids of the users and groups every test rootfs has. */
export const TEST_USERS = {
  root: { uid: 0, gid: 0 },
  nobody: { uid: 65534, gid: 65534 },
  lxr: { uid: 1000, gid: 1000, extraGroups: [2000] },
} as const;

let cachedRoot: string | undefined;

/** The checkout's root: compiled helpers run from dist-<name>/test/helpers,
 *  so walk up to the package.json named "lxr" instead of counting levels. */
export function repoRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      const parsed: unknown = JSON.parse(readFileSync(pkg, 'utf8'));
      if (typeof parsed === 'object' && parsed !== null && (parsed as { name?: unknown }).name === 'lxr') {
        cachedRoot = dir;
        return dir;
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json named "lxr" above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** Path of the built lxr-test-init (native/build, made by `make -C native`). */
export function testInitPath(): string {
  return join(repoRoot(), 'native', 'build', 'lxr-test-init');
}

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  'lxr:x:1000:1000:lxr test user:/home/lxr:/bin/sh',
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false',
  '',
].join('\n');

const GROUP = ['root:x:0:', 'lxr:x:1000:', 'extra:x:2000:lxr', 'nogroup:x:65534:', ''].join('\n');

const DIRS = ['bin', 'sbin', 'dev', 'proc', 'sys', 'tmp', 'etc', 'root', 'home', 'home/lxr', 'var', 'run', 'usr', 'usr/bin'];

async function buildTemplate(dir: string): Promise<void> {
  const init = testInitPath();
  try {
    await access(init, fsConstants.X_OK);
  } catch (e) {
    throw new Error(`${init} is missing: run \`make -C native build/lxr-test-init\` first`, { cause: e });
  }
  await chmod(dir, 0o755);
  for (const d of DIRS) await mkdir(join(dir, d), { recursive: true, mode: 0o755 });
  await chmod(join(dir, 'tmp'), 0o1777);
  await chmod(join(dir, 'root'), 0o700);
  await copyFile(HOST_BUSYBOX, join(dir, 'bin', 'busybox'));
  await chmod(join(dir, 'bin', 'busybox'), 0o755);
  const { stdout } = await execFileP(HOST_BUSYBOX, ['--list']);
  const applets = stdout.split('\n').filter((a) => a !== '' && a !== 'busybox' && !a.includes('/'));
  await Promise.all(applets.map((a) => symlink('busybox', join(dir, 'bin', a))));
  await writeFile(join(dir, 'etc', 'passwd'), PASSWD, { mode: 0o644 });
  await writeFile(join(dir, 'etc', 'group'), GROUP, { mode: 0o644 });
  await copyFile(init, join(dir, 'sbin', 'lxr-test-init'));
  await chmod(join(dir, 'sbin', 'lxr-test-init'), 0o755);
}

let template: Promise<string> | undefined;

function removeTemplateSync(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // The process is exiting; nowhere left to report this.
  }
}

/** One template per process: it outlives single tests, so it is removed at
 *  process exit rather than by a test's after-hook. */
function getTemplate(): Promise<string> {
  template ??= (async () => {
    const parent = await ownedTempDir('rootfs-template');
    process.on('exit', () => removeTemplateSync(parent));
    const dir = join(parent, 'rootfs');
    try {
      await mkdir(dir);
      await buildTemplate(dir);
    } catch (e) {
      await rm(parent, { recursive: true, force: true });
      template = undefined;
      throw e;
    }
    return dir;
  })();
  return template;
}

/**
 * Fills `dir` (created if missing) with a minimal busybox rootfs: applet
 * symlinks in /bin, /sbin/lxr-test-init, and the users root(0), lxr(1000,
 * also in group extra 2000) and nobody(65534).
 */
export async function makeBusyboxRootfs(dir: string): Promise<void> {
  const tpl = await getTemplate();
  await mkdir(dir, { recursive: true });
  await cp(tpl, dir, { recursive: true, verbatimSymlinks: true });
  // cp keeps modes but neither ownership nor the mode of an existing target
  // (mkdtemp makes 0700 dirs, which a non-root container user could not
  // traverse as "/").
  await chmod(dir, 0o755);
  if (process.getuid?.() === 0) await chown(join(dir, 'home', 'lxr'), TEST_USERS.lxr.uid, TEST_USERS.lxr.gid);
}

/**
 * Writes an OCI bundle into `dir`: config.json plus a busybox rootfs at the
 * config's root.path (relative to the bundle, or absolute). Returns `dir`.
 */
export async function makeBundle(dir: string, config: Spec): Promise<string> {
  const rootPath = config.root?.path ?? 'rootfs';
  await mkdir(dir, { recursive: true });
  await makeBusyboxRootfs(isAbsolute(rootPath) ? rootPath : join(dir, rootPath));
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n', { mode: 0o644 });
  return dir;
}
