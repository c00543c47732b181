// OverlayFS root filesystems: an image's unpacked layers as read-only
// lowerdirs under a per-container upperdir (the container's writes) and
// workdir (overlayfs's scratch space, same filesystem as upper).
//
// Design decision: the overlay is NOT mounted in the agent's (the host's)
// mount namespace. The runtime mounts it inside the container's own new mount
// namespace as the first mount step (the native helper receives the layer
// list as a RootfsOverlay), so a crash can never leave a host mount behind
// and nothing here touches the host's mount table; the mount disappears with
// the container's namespace. This module therefore only plans the mount and
// prepares (and removes) its directories; the runtime carries the plan to
// native code.

import { posix } from 'node:path';
import { chmodSync, mkdirSync } from 'node:fs';
import { rm, rmdir } from 'node:fs/promises';
import { LxrError, failAfterCleanup, invalidArgument, runCleanups } from '../../proto/shared/errors.js';

/** What the runtime hands to the native helper. lower is TOP layer first. */
export type RootfsOverlay = { lower: string[]; upper: string; work: string; target: string };

export interface OverlayPlan extends RootfsOverlay {
  /** The mount(2) data string: "lowerdir=A:B,upperdir=U,workdir=W". */
  options: string;
}

export interface OverlayInput {
  /** Unpacked layer directories, lowest (base) layer first, as images list them. */
  layers: string[];
  /** The container's own directory; upper, work and rootfs are made inside it. */
  containerDir: string;
}

/** overlayfs's own limit on lower layers (OVL_MAX_STACK). */
export const MAX_LAYERS = 500;
/** mount(2) copies at most one page of option data. */
export const MAX_OPTIONS_BYTES = 4095;

/** overlayfs splits its options on ',' and lowerdir on ':', and treats
 *  '\' as their escape; we pass paths unescaped, so they may not contain them. */
function checkPath(field: string, p: unknown): string {
  if (typeof p !== 'string' || p === '') throw invalidArgument(field, 'must be a non-empty path');
  if (!p.startsWith('/')) throw invalidArgument(field, `must be an absolute path, got ${JSON.stringify(p)}`);
  for (const ch of [':', ',', '\\', '\0']) {
    if (p.includes(ch)) {
      throw invalidArgument(field, `${JSON.stringify(p)} contains ${JSON.stringify(ch)}, which overlayfs mount options cannot carry`);
    }
  }
  const norm = posix.normalize(p);
  return norm.length > 1 && norm.endsWith('/') ? norm.slice(0, -1) : norm;
}

const within = (inner: string, outer: string): boolean =>
  inner === outer || outer === '/' || inner.startsWith(outer + '/');

/** Pure: validates the input and returns where everything goes. */
export function planOverlay(input: OverlayInput): OverlayPlan {
  if (!Array.isArray(input.layers) || input.layers.length === 0) {
    throw invalidArgument('layers', 'at least one layer is required');
  }
  if (input.layers.length > MAX_LAYERS) {
    throw invalidArgument('layers', `${input.layers.length} layers, overlayfs stacks at most ${MAX_LAYERS}`);
  }
  const containerDir = checkPath('containerDir', input.containerDir);
  if (containerDir === '/') throw invalidArgument('containerDir', 'must not be the root directory');
  const layers = input.layers.map((l, i) => checkPath(`layers[${i}]`, l));
  const seen = new Map<string, number>();
  layers.forEach((l, i) => {
    const dup = seen.get(l);
    if (dup !== undefined) throw invalidArgument(`layers[${i}]`, `same directory as layers[${dup}]`);
    seen.set(l, i);
    // overlayfs refuses overlapping lower and upper/work trees (ELOOP); say so before mounting.
    if (within(l, containerDir) || within(containerDir, l)) {
      throw invalidArgument(`layers[${i}]`, `overlaps containerDir ${JSON.stringify(containerDir)}`);
    }
  });
  const upper = posix.join(containerDir, 'upper');
  const work = posix.join(containerDir, 'work');
  const target = posix.join(containerDir, 'rootfs');
  const lower = [...layers].reverse();
  const options = `lowerdir=${lower.join(':')},upperdir=${upper},workdir=${work}`;
  if (Buffer.byteLength(options) > MAX_OPTIONS_BYTES) {
    throw invalidArgument('layers', `overlay mount options are ${Buffer.byteLength(options)} bytes; mount(2) takes at most ${MAX_OPTIONS_BYTES}`);
  }
  return { lower, upper, work, target, options };
}

/** The host side effects this module needs. */
export interface OverlayFs {
  /** Creates `path` (and missing parents) with `mode`; resolves true if it
   *  created `path`, false if it already was a directory. */
  mkdir(path: string, mode: number): Promise<boolean>;
  /** Removes `path`; recursive removes a whole tree, otherwise it must be an
   *  empty directory. A missing path is not an error. */
  rm(path: string, opts: { recursive: boolean }): Promise<void>;
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

const errnoOf = (e: unknown): string | undefined => (e as NodeJS.ErrnoException | undefined)?.code;

function hostError(reason: 'LXR_HOST_SETUP_FAILED' | 'LXR_CLEANUP_FAILED', step: string, e: unknown): LxrError {
  const errno = errnoOf(e);
  return new LxrError(reason, `${step}: ${message(e)}`, { step, cause: e, ...(errno !== undefined ? { errno } : {}) });
}

export const linuxOverlayFs: OverlayFs = {
  // Synchronous: a few local mkdirs at every create, cheaper than thread-pool round trips.
  async mkdir(path, mode) {
    try {
      const first = mkdirSync(path, { recursive: true, mode });
      if (first === undefined) return false;
      // The umask may have narrowed mode; upper's mode is what the container sees as "/".
      chmodSync(path, mode);
      return true;
    } catch (e) {
      throw hostError('LXR_HOST_SETUP_FAILED', `mkdir ${path}`, e);
    }
  },
  async rm(path, opts) {
    try {
      if (opts.recursive) await rm(path, { recursive: true, force: true });
      else await rmdir(path);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return;
      throw hostError('LXR_CLEANUP_FAILED', `remove ${path}`, e);
    }
  },
};

export type FakeOverlayFsCall = { op: 'mkdir'; path: string; mode: number } | { op: 'rm'; path: string; recursive: boolean };

/** Records calls; `existing` holds directories that "already exist", and
 *  failOn makes the matching call throw. */
export class FakeOverlayFs implements OverlayFs {
  readonly calls: FakeOverlayFsCall[] = [];
  readonly existing = new Set<string>();
  failOn: ((call: FakeOverlayFsCall) => Error | undefined) | undefined;

  constructor(existing: Iterable<string> = []) {
    for (const p of existing) this.existing.add(p);
  }

  async mkdir(path: string, mode: number): Promise<boolean> {
    const call: FakeOverlayFsCall = { op: 'mkdir', path, mode };
    this.calls.push(call);
    const err = this.failOn?.(call);
    if (err) throw err;
    if (this.existing.has(path)) return false;
    this.existing.add(path);
    return true;
  }

  async rm(path: string, opts: { recursive: boolean }): Promise<void> {
    const call: FakeOverlayFsCall = { op: 'rm', path, recursive: opts.recursive };
    this.calls.push(call);
    const err = this.failOn?.(call);
    if (err) throw err;
    this.existing.delete(path);
  }
}

/**
 * Creates upper (0755: overlayfs shows its mode as the container's "/"),
 * work (0700: scratch only) and the mountpoint. Idempotent: an existing
 * upper is a stopped container's files and is kept. If a step fails, those
 * of the three that this call created are removed again (containerDir stays:
 * it belongs to the caller).
 */
export async function prepareOverlayDirs(plan: RootfsOverlay, fs: OverlayFs): Promise<void> {
  const created: string[] = [];
  const steps: Array<[string, number]> = [
    [plan.upper, 0o755],
    [plan.work, 0o700],
    [plan.target, 0o755],
  ];
  try {
    for (const [path, mode] of steps) {
      if (await fs.mkdir(path, mode)) created.push(path);
    }
  } catch (e) {
    await failAfterCleanup(
      e,
      created.reverse().map((p) => () => fs.rm(p, { recursive: true })),
    );
  }
}

/**
 * Removes the container's overlay directories, the upper (its files)
 * included. The mountpoint goes first and non-recursively: on the host it is
 * an empty directory, and if it is not (something wrongly mounted there) we
 * stop, rather than delete through a live mount into the image's layers or
 * pull upper and work from under it. Work and upper are both attempted.
 */
export async function removeOverlayDirs(plan: RootfsOverlay, fs: OverlayFs): Promise<void> {
  await fs.rm(plan.target, { recursive: false });
  const failures = await runCleanups([
    () => fs.rm(plan.work, { recursive: true }),
    () => fs.rm(plan.upper, { recursive: true }),
  ]);
  if (failures.length === 0) return;
  if (failures.length === 1) throw failures[0];
  const msg = failures.map(message).join('; ');
  throw new LxrError('LXR_CLEANUP_FAILED', msg, { cause: new AggregateError(failures, msg), step: 'remove overlay directories' });
}
