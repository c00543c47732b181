// Image platforms (OCI "platform": os/architecture/variant): the host's own,
// normalisation of the many spellings (x86_64, aarch64, armhf...), and the
// choice of one manifest from an index, as containerd's platforms.Only does.

import { LxrError } from '../../../proto/shared/errors.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** Node's process.arch -> GOARCH (the names images use). */
const NODE_TO_GOARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mips: 'mips',
  mipsel: 'mipsle',
};

/** The platform images must be for to run here: linux plus the host's architecture. */
export function hostPlatform(arch: string = process.arch, armVersion: unknown = (process.config.variables as Record<string, unknown>)['arm_version']): Platform {
  const architecture = NODE_TO_GOARCH[arch] ?? arch;
  if (architecture === 'arm') return { os: 'linux', architecture, variant: `v${String(armVersion ?? '7')}` };
  if (architecture === 'arm64') return { os: 'linux', architecture, variant: 'v8' };
  return { os: 'linux', architecture };
}

/**
 * Canonical spelling, as containerd's platforms.Normalize: architecture
 * aliases resolved, and each architecture's default variant made explicit
 * (arm64 -> v8, arm -> v7, amd64 -> v1) so "" and the default compare equal.
 */
export function normalizePlatform(p: Platform): Required<Platform> {
  const os = p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = (p.variant ?? '').toLowerCase();
  switch (architecture) {
    case 'x86_64':
    case 'x86-64':
      architecture = 'amd64';
      break;
    case 'aarch64':
      architecture = 'arm64';
      break;
    case 'armhf':
      architecture = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      architecture = 'arm';
      variant = 'v6';
      break;
    case 'i386':
    case 'i686':
      architecture = '386';
      break;
  }
  if (architecture === 'arm64' && (variant === '' || variant === '8')) variant = 'v8';
  if (architecture === 'arm' && variant === '') variant = 'v7';
  if (architecture === 'arm' && /^[5-8]$/.test(variant)) variant = `v${variant}`;
  if (architecture === 'amd64' && variant === '') variant = 'v1';
  return { os, architecture, variant };
}

export function platformString(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** Parses "linux/arm64/v8", "linux/amd64" (as `docker pull --platform`). */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((x) => x === '')) {
    throw new LxrError('LXR_INVALID_ARGUMENT', `invalid argument platform: ${JSON.stringify(s)} is not os/architecture[/variant]`, { field: 'platform' });
  }
  const p: Platform = { os: parts[0]!, architecture: parts[1]! };
  if (parts[2] !== undefined) p.variant = parts[2];
  return p;
}

/**
 * How well `candidate` serves `want`: 0 is an exact match, higher is a
 * compatible fallback (an arm v7 host runs v6 and v5 images, an amd64 v3 host
 * runs v2 and v1), undefined is no match.
 */
export function platformRank(want: Platform, candidate: Platform): number | undefined {
  const w = normalizePlatform(want);
  const c = normalizePlatform(candidate);
  if (w.os !== c.os || w.architecture !== c.architecture) return undefined;
  if (w.variant === c.variant) return 0;
  const level = (v: string): number | undefined => (/^v\d+$/.test(v) ? Number(v.slice(1)) : undefined);
  const wl = level(w.variant);
  const cl = level(c.variant);
  if ((w.architecture === 'arm' || w.architecture === 'amd64') && wl !== undefined && cl !== undefined && cl < wl) return wl - cl;
  return undefined;
}

/**
 * Picks the entry of an index to pull: the best-ranked match, the first
 * of equals in index order. Entries without a platform never match.
 * Throws LXR_NOT_FOUND listing what the index does offer.
 */
export function selectPlatform<T extends { platform?: Platform | undefined }>(entries: readonly T[], want: Platform, what = 'image'): T {
  let best: T | undefined;
  let bestRank = Infinity;
  for (const e of entries) {
    if (e.platform === undefined || typeof e.platform.os !== 'string' || typeof e.platform.architecture !== 'string') continue;
    const r = platformRank(want, e.platform);
    if (r !== undefined && r < bestRank) {
      best = e;
      bestRank = r;
    }
  }
  if (best !== undefined) return best;
  const offered = [
    ...new Set(
      entries
        .map((e) => e.platform)
        .filter((p): p is Platform => p !== undefined && typeof p.os === 'string' && p.os !== 'unknown' && typeof p.architecture === 'string')
        .map(platformString),
    ),
  ];
  throw new LxrError(
    'LXR_NOT_FOUND',
    `${what} has no manifest for platform ${platformString(want)}; it offers ${offered.length > 0 ? offered.join(', ') : 'no platforms'}`,
    { field: 'platform' },
  );
}
