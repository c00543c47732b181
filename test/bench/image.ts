// The image benchmark: pull and unpack one multi-layer image (>= 200 MB
// uncompressed) from a local registry (docker-registry on loopback,
// anonymous), in the same run, with
//   - LXR: RegistryClient.resolve, the config and every layer blob fetched
//     concurrently into a fresh BlobStore, each layer unpacked (unpackLayer)
//     into its own fresh directory as soon as its blob is in;
//   - skopeo + umoci: `skopeo copy docker://... oci:DIR:tag`, then
//     `umoci unpack --image DIR:tag BUNDLE`.
// Contenders alternate for N rounds (the order flips each round); every round
// starts from empty directories. The image is built in memory per run with a
// fixed seed: five gzip layers mixing thousands of small text-like files
// (like a language runtime) and large incompressible ones.

import { spawn } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BlobStore } from '../../agent/image/blob-store.js';
import { RegistryClient } from '../../agent/image/registry/client.js';
import { unpackLayer } from '../../agent/image/unpack.js';
import { buildImage, type LayerSpec, type TestImage } from '../helpers/oci-image.js';
import { REGISTRY_BIN, REGISTRY_SKIP, TestPusher, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { formatTable, round, speedRatio, summarize, type Summary } from './stats.js';
import { catchInterrupts, checkInterrupted, trackChild } from './interrupt.js';

export const LXR = 'lxr';
export const PEER = 'skopeo+umoci';
const SKOPEO_BIN = '/usr/bin/skopeo';
const UMOCI_BIN = '/usr/bin/umoci';
const REPO = 'lxrbench/image';
const TAG = 'bench';
const LIMITS = { maxBytes: 4 * 2 ** 30, maxEntries: 1_000_000 };

export interface ImageBenchOptions {
  rounds: number;
  log: (line: string) => void;
}

export interface ImageBenchResult {
  rounds: number;
  image: { layers: number; files: number; uncompressedBytes: number; compressedBytes: number };
  /** Per pull+unpack, seconds. */
  contenders: Record<string, Summary>;
  /** Parts of the peer's time, seconds (medians). */
  parts: Record<string, number>;
  ratios: Record<string, number | null>;
  targets: Record<string, { met: boolean | null; ratio: number | null; text: string }>;
  notes: string[];
}

// ---------------------------------------------------------------------------
// The image.

/** mulberry32: a small seeded PRNG, so the image is the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ('import export function return const let var if else for while class extends static async await new this ' +
  'self def lambda yield from module require package struct interface type string number bytes buffer error value ' +
  'index length count result options config parse format read write open close stream socket thread lock queue map ' +
  'list set dict array object null true false none print log debug info warn assert test case switch break continue').split(' ');

/** Source-code-like text (compresses about 3-4x, like a runtime's files). */
function textCorpus(rand: () => number, bytes: number): Buffer {
  const parts: string[] = [];
  let n = 0;
  while (n < bytes) {
    const indent = '  '.repeat(Math.floor(rand() * 4));
    const len = 3 + Math.floor(rand() * 9);
    const words: string[] = [];
    for (let i = 0; i < len; i++) {
      const w = WORDS[Math.floor(rand() * WORDS.length)]!;
      words.push(rand() < 0.25 ? `${w}_${Math.floor(rand() * 100000).toString(36)}` : w);
    }
    const line = `${indent}${words.join(' ')};\n`;
    parts.push(line);
    n += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

/** Incompressible bytes from the PRNG. */
function noise(rand: () => number, bytes: number): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  for (let i = 0; i + 4 <= bytes; i += 4) b.writeUInt32LE((rand() * 4294967296) >>> 0, i);
  for (let i = bytes - (bytes % 4); i < bytes; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** A tree of small files: `count` files under `root`, sizes log-normal around ~5 KB. */
function smallFiles(rand: () => number, corpus: Buffer, root: string, count: number, ext: string): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  const dirs = Math.max(1, Math.round(count / 25));
  for (let i = 0; i < count; i++) {
    const d = Math.floor(rand() * dirs);
    const dir = `${root}/pkg${d % 40}/mod${d}`;
    const size = Math.min(256 * 1024, Math.floor(Math.exp(7 + rand() * 3.5))); // ~1 KB .. ~36 KB, a few larger
    const off = Math.floor(rand() * (corpus.length - size));
    files[`${dir}/file${i}.${ext}`] = corpus.subarray(off, off + size);
  }
  return files;
}

export function benchImageSpec(): LayerSpec[] {
  const rand = prng(0x1a2b3c);
  const corpus = textCorpus(rand, 4 << 20);
  const big = (name: string, mb: number): Record<string, Buffer> => ({ [name]: noise(rand, mb << 20) });
  return [
    // A base system: many small files, a few binaries.
    { files: { ...smallFiles(rand, corpus, 'usr/share/base', 3000, 'txt'), ...big('usr/lib/libbase.so', 12), ...big('usr/bin/busybox', 4) } },
    // A language runtime: thousands of small source files and a big binary.
    { files: { ...smallFiles(rand, corpus, 'usr/lib/runtime', 6000, 'py'), ...big('usr/bin/runtime', 24) } },
    // Native libraries: large, barely compressible.
    { files: { ...big('opt/libs/libml.so', 40), ...big('opt/libs/libcodec.so', 30), ...big('opt/libs/libdb.so', 20) } },
    // Application dependencies: a node_modules-like tree and bundled assets.
    { files: { ...smallFiles(rand, corpus, 'app/node_modules', 4000, 'js'), ...big('app/assets/bundle.bin', 16), ...big('app/assets/model.bin', 12) } },
    // The application itself.
    { files: { ...smallFiles(rand, corpus, 'app/src', 800, 'ts'), 'app/package.json': Buffer.from('{"name":"bench"}\n') } },
  ];
}

// ---------------------------------------------------------------------------
// Timing one command (interrupt handling: ./interrupt.ts).

/** Runs a command (its own process group, so Ctrl-C can end it); ms. */
async function timed(cmd: string, args: string[]): Promise<number> {
  checkInterrupted();
  const t0 = process.hrtime.bigint();
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  const done = trackChild(child);
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    if (err.length < 16 * 1024) err += d;
  });
  const code = await done;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  checkInterrupted();
  if (code !== 0) throw new Error(`${path.basename(cmd)} ${args.join(' ')}: exit ${code}: ${err.trim()}`);
  return ms;
}

// ---------------------------------------------------------------------------
// The contenders.

/** LXR: resolve, fetch config + layers concurrently, unpack each layer as its blob lands; ms. */
async function lxrPull(ref: string, dir: string): Promise<number> {
  checkInterrupted();
  const t0 = process.hrtime.bigint();
  const client = new RegistryClient({ retries: 0 });
  try {
    const store = new BlobStore(path.join(dir, 'blobs'));
    const img = await client.resolve(ref, { store });
    const configP = client.fetchConfig(img.reference, img.config, store);
    const fetched = img.layers.map((l) => client.fetchBlob(img.reference, l.digest, l.size, store));
    for (const f of fetched) f.catch(() => {}); // handled below; not "unhandled" meanwhile
    const config = await configP.catch(async (e: unknown) => {
      await Promise.allSettled(fetched);
      throw e;
    });
    // allSettled: on a failure or Ctrl-C, nothing may still be writing when the caller removes dir.
    const unpacked = await Promise.allSettled(
      img.layers.map(async (l, i) => {
        await fetched[i];
        checkInterrupted();
        await unpackLayer({
          source: createReadStream(store.path(l.digest)),
          mediaType: l.mediaType,
          dest: path.join(dir, 'layers', String(i)),
          expectedDiffId: config.rootfs.diff_ids[i]!,
          limits: LIMITS,
        });
      }),
    );
    for (const r of unpacked) if (r.status === 'rejected') throw r.reason;
  } finally {
    client.close();
  }
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** skopeo copy + umoci unpack; ms for each. */
async function peerPull(host: string, dir: string): Promise<{ skopeo: number; umoci: number }> {
  const layout = path.join(dir, 'oci');
  const skopeo = await timed(SKOPEO_BIN, ['copy', '--quiet', '--src-tls-verify=false', `docker://${host}/${REPO}:${TAG}`, `oci:${layout}:${TAG}`]);
  const umoci = await timed(UMOCI_BIN, ['unpack', '--image', `${layout}:${TAG}`, path.join(dir, 'bundle')]);
  return { skopeo, umoci };
}

// ---------------------------------------------------------------------------

export async function imageBench(opts: ImageBenchOptions): Promise<ImageBenchResult> {
  const { rounds, log } = opts;
  const notes: string[] = [];
  for (const [bin, pkg] of [
    [REGISTRY_BIN, REGISTRY_SKIP],
    [SKOPEO_BIN, 'skopeo is not installed (Debian package skopeo)'],
    [UMOCI_BIN, 'umoci is not installed (Debian package umoci)'],
  ] as const) {
    if (!existsSync(bin)) throw new Error(pkg);
  }
  const releaseSignals = catchInterrupts('lxr-bench-image-* temp dirs');
  let registry: TestRegistry | undefined;
  const dir = await mkdtemp(path.join(tmpdir(), 'lxr-bench-image-'));
  try {
    log('image bench: building the image in memory (5 gzip layers)…');
    const t0 = Date.now();
    const img: TestImage = buildImage({ layers: benchImageSpec() });
    const files = img.tars.reduce((n, t) => n + countTarFiles(t), 0);
    const image = {
      layers: img.layers.length,
      files,
      uncompressedBytes: img.tars.reduce((n, t) => n + t.length, 0),
      compressedBytes: img.layers.reduce((n, l) => n + l.size, 0),
    };
    log(`  ${image.layers} layers, ${image.files} files, ${mb(image.uncompressedBytes)} uncompressed, ${mb(image.compressedBytes)} gzip (built in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    checkInterrupted();
    registry = await startRegistry();
    await new TestPusher(registry.host).pushImage(REPO, img, TAG);
    img.tars.length = 0; // let the memory go
    const ref = `${registry.host}/${REPO}:${TAG}`;
    log(`  pushed to ${ref}; ${rounds} round(s), contenders alternating`);

    const samples: Record<string, number[]> = { [LXR]: [], [PEER]: [] };
    const parts: Record<string, number[]> = { skopeo: [], umoci: [] };
    const contenders: Array<{ name: string; run: (d: string) => Promise<number> }> = [
      { name: LXR, run: (d) => lxrPull(ref, d) },
      {
        name: PEER,
        run: async (d) => {
          const r = await peerPull(registry!.host, d);
          parts.skopeo!.push(r.skopeo);
          parts.umoci!.push(r.umoci);
          return r.skopeo + r.umoci;
        },
      },
    ];
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? contenders : [...contenders].reverse();
      const row: string[] = [];
      for (const c of order) {
        const d = path.join(dir, `${c.name.replace(/\W/g, '-')}-${r}`);
        await mkdir(d);
        try {
          const ms = await c.run(d);
          samples[c.name]!.push(ms);
          row.push(`${c.name} ${(ms / 1000).toFixed(2)} s`);
        } finally {
          await rm(d, { recursive: true, force: true });
        }
      }
      log(`  round ${r + 1}/${rounds}: ${row.join(', ')}`);
    }

    const sec = (ms: readonly number[]): Summary => {
      const s = summarize(ms.map((x) => x / 1000));
      return { median: round(s.median), p90: round(s.p90), min: round(s.min), n: s.n };
    };
    const result: ImageBenchResult = {
      rounds,
      image,
      contenders: { [LXR]: sec(samples[LXR]!), [PEER]: sec(samples[PEER]!) },
      parts: { 'skopeo copy': sec(parts.skopeo!).median, 'umoci unpack': sec(parts.umoci!).median },
      ratios: {},
      targets: {},
      notes,
    };
    const l = result.contenders[LXR]!.median;
    const p = result.contenders[PEER]!.median;
    const cmp = speedRatio(LXR, l, PEER, p);
    result.ratios[`${PEER}/${LXR}`] = Number.isFinite(cmp.ratio) ? round(cmp.ratio) : null;
    result.targets[`${LXR} at least as fast as ${PEER}`] = { met: l <= p, ratio: result.ratios[`${PEER}/${LXR}`] ?? null, text: cmp.text };
    return result;
  } finally {
    releaseSignals();
    const errors: string[] = [];
    await registry?.stop().catch((e: unknown) => errors.push(`registry: ${(e as Error).message}`));
    await rm(dir, { recursive: true, force: true }).catch((e: unknown) => errors.push((e as Error).message));
    if (errors.length) log(`cleanup problems: ${errors.join('; ')}`);
  }
}

const mb = (n: number): string => `${(n / (1 << 20)).toFixed(1)} MiB`;

/** Regular files in a ustar archive as written by tarOf (headers with type '0'). */
function countTarFiles(tar: Buffer): number {
  let n = 0;
  for (let off = 0; off + 512 <= tar.length; ) {
    if (tar[off] === 0) break;
    const size = parseInt(tar.toString('latin1', off + 124, off + 135), 8);
    if (tar[off + 156] === 0x30) n++;
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return n;
}

/** The human-readable report. */
export function formatImageReport(r: ImageBenchResult): string {
  const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');
  const rows = Object.entries(r.contenders).map(([name, s]) => [name, fmt(s.median), fmt(s.p90), fmt(s.min), String(s.n)]);
  for (const [name, v] of Object.entries(r.parts)) rows.push([`  of which ${name}`, fmt(v), '', '', '']);
  const out = [
    `Image: pull + unpack of ${r.image.layers} gzip layers, ${r.image.files} files, ${mb(r.image.uncompressedBytes)} uncompressed (${mb(r.image.compressedBytes)} compressed) from a loopback registry; times in s`,
    '',
    formatTable(['contender', 'median', 'p90', 'min', 'n'], rows),
    '',
    'Ratio (median; peer/subject > 1 means the subject is faster):',
    `  ${LXR} vs ${PEER}: ${speedRatio(LXR, r.contenders[LXR]!.median, PEER, r.contenders[PEER]!.median).text}`,
    '',
    'Targets (reported, not asserted):',
  ];
  for (const [name, t] of Object.entries(r.targets)) out.push(`  ${t.met === null ? 'SKIP' : t.met ? 'PASS' : 'MISS'}  ${name}  (${t.text})`);
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join('\n');
}
