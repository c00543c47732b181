// Layer entry policy and OCI -> overlayfs whiteout conversion, as pure
// planning: entries are judged one at a time as the tar streams past (so a
// hostile entry stops the unpack at once), and the result is the plan that
// the native helper carries out beneath the layer directory.
//
// OCI whiteouts are files: `.wh.NAME` deletes NAME of the lower layers and
// `.wh..wh..opq` in a directory hides everything the lower layers have there.
// overlayfs wants a 0/0 character device at NAME and the
// `trusted.overlay.opaque=y` xattr on the directory. Per the OCI spec a
// whiteout only affects lower layers: when the same layer also has NAME, the
// layer's own NAME wins (a directory of this layer then becomes opaque, which
// is exactly "delete the lower one, then create this one").
//
// Policy: anything doubtful refuses the whole layer with an error naming the
// entry; nothing is ever silently stripped or rewritten.

import { LxrError } from '../../proto/shared/errors.js';

export type LayerEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'other';

export interface LayerEntry {
  /** The path as the tar header (or its pax record) has it. */
  path: string;
  type: LayerEntryType;
  /** The tar type name, for messages about unsupported types. */
  typeName?: string;
  /** Symlink target, or the earlier entry a hardlink points at. */
  linkpath?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtimeMs?: number;
}

/** Final attributes the extractor cannot be trusted to produce by itself. */
export interface AttrFix {
  /** Relative to the layer dir; '' is the layer dir itself. */
  path: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtimeMs?: number;
}

/** What the native helper does beneath the layer directory, in this order. */
export interface FsPlan {
  /** Symlinks, created by the helper (never by the extractor: see LayerPlanner). */
  symlinks: Array<{ path: string; target: string }>;
  /** Where to create 0/0 character devices. */
  whiteouts: string[];
  /** Directories to mark trusted.overlay.opaque=y ('' = the layer root). */
  opaque: string[];
  /** Ownership, modes and mtimes, applied last (after every directory is final). */
  attrs: AttrFix[];
}

export const WH_PREFIX = '.wh.';
export const WH_OPAQUE = '.wh..wh..opq';
const WH_META = '.wh..wh.';

export const entryError = (entry: string, problem: string): LxrError =>
  new LxrError('LXR_INVALID_ARGUMENT', `layer entry ${JSON.stringify(entry)}: ${problem}`, { field: 'layer' });

/**
 * A tar path made relative to the layer root: `./a//b/` -> `a/b`, `.` -> ''.
 * Absolute paths and `..` are refused, not stripped: a layer that has them
 * was made by something we should not trust.
 */
/** Linux's own limits (PATH_MAX, NAME_MAX) and a depth no real image needs:
 *  checked before anything walks the path, which costs depth squared. */
export const MAX_ENTRY_PATH = 4095;
export const MAX_ENTRY_NAME = 255;
export const MAX_ENTRY_DEPTH = 1024;

export function normalizeEntryPath(raw: string, what = raw, field = 'path'): string {
  if (raw === '') throw entryError(what, `empty ${field}`);
  if (Buffer.byteLength(raw) > MAX_ENTRY_PATH) throw entryError(what.slice(0, 200) + '…', `${field} is longer than ${MAX_ENTRY_PATH} bytes`);
  if (raw.includes('\0')) throw entryError(what, `${field} contains a NUL byte`);
  if (raw.startsWith('/')) throw entryError(what, `absolute ${field} ${JSON.stringify(raw)}`);
  const parts: string[] = [];
  for (const part of raw.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw entryError(what, `${field} ${JSON.stringify(raw)} contains '..'`);
    if (Buffer.byteLength(part) > MAX_ENTRY_NAME) throw entryError(what, `a name in the ${field} is longer than ${MAX_ENTRY_NAME} bytes`);
    parts.push(part);
  }
  if (parts.length > MAX_ENTRY_DEPTH) throw entryError(what.slice(0, 200) + '…', `${field} is deeper than ${MAX_ENTRY_DEPTH} levels`);
  return parts.join('/');
}

export type WhiteoutKind = { kind: 'whiteout'; target: string } | { kind: 'opaque'; dir: string } | null;

const parentOf = (p: string): string => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
const baseOf = (p: string): string => p.slice(p.lastIndexOf('/') + 1);

/** Classifies a normalized path: an ordinary entry (null), a whiteout or an opaque marker. */
export function classifyWhiteout(path: string, type: LayerEntryType = 'file', raw = path): WhiteoutKind {
  const parts = path.split('/');
  const base = parts[parts.length - 1] ?? '';
  for (const dir of parts.slice(0, -1)) {
    if (dir.startsWith(WH_PREFIX)) throw entryError(raw, `a whiteout name (${JSON.stringify(dir)}) cannot be a directory`);
  }
  if (!base.startsWith(WH_PREFIX)) return null;
  if (type === 'dir') throw entryError(raw, 'a whiteout cannot be a directory');
  if (base === WH_OPAQUE) return { kind: 'opaque', dir: parentOf(path) };
  if (base.startsWith(WH_META)) {
    // `.wh..wh.` is reserved for the opaque marker (and AUFS metadata such
    // as .wh..wh.plnk, which OCI layers must not carry).
    throw entryError(raw, `unknown whiteout meta name ${JSON.stringify(base)}`);
  }
  const name = base.slice(WH_PREFIX.length);
  if (name === '') throw entryError(raw, "whiteout '.wh.' names nothing");
  if (name === '.' || name === '..') throw entryError(raw, `whiteout of ${JSON.stringify(name)} is not allowed`);
  const dir = parentOf(path);
  return { kind: 'whiteout', target: dir === '' ? name : `${dir}/${name}` };
}

type Kind = 'file' | 'dir' | 'symlink';

export interface PlannerOptions {
  /** The process umask: file modes it would mask need an explicit chmod. */
  umask?: number;
}

/**
 * Judges entries in archive order and remembers what each path became.
 * add() returns true when the extractor should write the entry itself:
 * regular files, hardlinks and directories. Symlinks and whiteouts are
 * never handed to the extractor: they go into the plan, carried out after
 * extraction by the native helper, which resolves every path beneath the
 * layer dir without following symlinks. Since no entry may pass through a
 * symlink of the same layer, deferring them changes nothing but safety.
 */
export class LayerPlanner {
  private readonly kinds = new Map<string, Kind>();
  private readonly symlinks = new Map<string, string>();
  private readonly whiteouts = new Map<string, string>(); // target -> raw entry path
  private readonly opaque = new Set<string>();
  private readonly attrs = new Map<string, AttrFix>();
  private readonly umask: number;
  entries = 0;

  constructor(opts: PlannerOptions = {}) {
    this.umask = opts.umask ?? 0o022;
  }

  add(e: LayerEntry): boolean {
    this.entries++;
    const raw = e.path;
    const path = normalizeEntryPath(raw);
    this.checkAncestors(path, raw);
    const wh = classifyWhiteout(path, e.type, raw);
    if (wh !== null) {
      // The whiteout's directory exists in this layer (the helper makes it).
      this.markParents(path);
      if (wh.kind === 'opaque') this.opaque.add(wh.dir);
      else if (!this.whiteouts.has(wh.target)) this.whiteouts.set(wh.target, raw);
      return false;
    }
    const prev = this.kinds.get(path);
    switch (e.type) {
      case 'dir': {
        if (prev !== undefined && prev !== 'dir') throw entryError(raw, `replaces the ${prev} of an earlier entry with a directory`);
        this.markDir(path);
        this.attrs.set(path, fix(path, e, e.mode));
        return true;
      }
      case 'file':
      case 'hardlink': {
        if (path === '') throw entryError(raw, 'only a directory may stand for the layer root');
        if (prev === 'dir' || prev === 'symlink') throw entryError(raw, `replaces the ${prev} of an earlier entry with a file`);
        if (e.type === 'hardlink') {
          const target = normalizeEntryPath(e.linkpath ?? '', raw, 'hardlink target');
          const k = this.kinds.get(target);
          if (k === undefined) throw entryError(raw, `hardlink target ${JSON.stringify(e.linkpath)} is not an earlier file of this layer`);
          if (k !== 'file') throw entryError(raw, `hardlink target ${JSON.stringify(e.linkpath)} is a ${k}, not a file`);
          if (target === path) throw entryError(raw, 'hardlink to itself');
          // A new inode replacing a hardlinked one keeps nothing from it.
          this.attrs.delete(path);
        } else {
          const mode = (e.mode ?? 0o644) & 0o7777;
          // The extractor opens files with the mode minus the umask, chown
          // clears set-id bits, and a rewritten file keeps its old mode.
          if (prev !== undefined || (mode & (0o7000 | this.umask)) !== 0) this.attrs.set(path, fix(path, e, mode));
          else this.attrs.delete(path);
        }
        this.kinds.set(path, 'file');
        this.markParents(path);
        return true;
      }
      case 'symlink': {
        if (path === '') throw entryError(raw, 'only a directory may stand for the layer root');
        if (prev === 'dir' || prev === 'file') throw entryError(raw, `replaces the ${prev} of an earlier entry with a symlink`);
        const target = e.linkpath ?? '';
        if (target === '') throw entryError(raw, 'symlink with an empty target');
        if (target.includes('\0')) throw entryError(raw, 'symlink target contains a NUL byte');
        this.kinds.set(path, 'symlink');
        this.markParents(path);
        this.symlinks.set(path, target);
        this.attrs.set(path, { path, ...owner(e), ...(e.mtimeMs !== undefined ? { mtimeMs: e.mtimeMs } : {}) });
        return false;
      }
      case 'char':
      case 'block':
      case 'fifo':
        throw entryError(raw, `${e.type === 'fifo' ? 'FIFO' : `${e.type} device`} nodes are not allowed in image layers`);
      default:
        throw entryError(raw, `unsupported entry type ${e.typeName ?? e.type}`);
    }
  }

  /** No entry may pass through a symlink or a file of this layer. */
  private checkAncestors(path: string, raw: string): void {
    let i = path.indexOf('/');
    while (i !== -1) {
      const dir = path.slice(0, i);
      const k = this.kinds.get(dir);
      if (k === 'symlink') throw entryError(raw, `would be written through the symlink ${JSON.stringify(dir)}`);
      if (k === 'file') throw entryError(raw, `its parent ${JSON.stringify(dir)} is a file`);
      if (k === undefined) break; // nothing deeper can be known either
      i = path.indexOf('/', i + 1);
    }
  }

  private markDir(path: string): void {
    if (path !== '') this.kinds.set(path, 'dir');
    this.markParents(path);
  }

  private markParents(path: string): void {
    for (let p = parentOf(path); p !== '' && !this.kinds.has(p); p = parentOf(p)) this.kinds.set(p, 'dir');
  }

  finish(): FsPlan {
    const whiteouts: string[] = [];
    for (const [target, raw] of this.whiteouts) {
      const k = this.kinds.get(target);
      // The layer's own entry wins; its directory hides the lower one's content.
      if (k === 'dir') this.opaque.add(target);
      else if (k === undefined) {
        this.checkAncestors(target, raw);
        whiteouts.push(target);
      }
    }
    for (const dir of this.opaque) {
      const k = this.kinds.get(dir);
      if (dir !== '' && k !== undefined && k !== 'dir') throw entryError(dir, `opaque marker in a ${k}`);
    }
    return {
      symlinks: [...this.symlinks].map(([path, target]) => ({ path, target })),
      whiteouts,
      opaque: [...this.opaque],
      attrs: [...this.attrs.values()],
    };
  }
}

function owner(e: LayerEntry): { uid?: number; gid?: number } {
  return { ...(e.uid !== undefined ? { uid: e.uid } : {}), ...(e.gid !== undefined ? { gid: e.gid } : {}) };
}

function fix(path: string, e: LayerEntry, mode: number | undefined): AttrFix {
  return {
    path,
    ...(mode !== undefined ? { mode: mode & 0o7777 } : {}),
    ...owner(e),
    ...(e.mtimeMs !== undefined ? { mtimeMs: e.mtimeMs } : {}),
  };
}

/** Convenience for tables: plans a whole entry list. */
export function planLayer(entries: LayerEntry[], opts: PlannerOptions = {}): FsPlan {
  const p = new LayerPlanner(opts);
  for (const e of entries) p.add(e);
  return p.finish();
}
