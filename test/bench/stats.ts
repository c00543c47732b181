// Pure statistics and formatting for the benchmarks: percentiles over
// per-iteration durations (milliseconds) and "how many times faster" ratios
// worded so a reader never has to guess which way round they go.

export interface Summary {
  /** Per-iteration median, ms. */
  median: number;
  /** 90th percentile (nearest rank), ms. */
  p90: number;
  min: number;
  /** Number of samples. */
  n: number;
}

/** The p-th percentile (0 < p <= 100) by nearest rank; NaN for no samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p}: expected 0 < p <= 100`);
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** The median; the mean of the two middle samples for an even count; NaN for none. */
export function median(samples: readonly number[]): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function summarize(samples: readonly number[]): Summary {
  return {
    median: median(samples),
    p90: percentile(samples.length ? samples : [NaN], 90),
    min: samples.length ? Math.min(...samples) : NaN,
    n: samples.length,
  };
}

/** Rounds to `digits` decimals (for JSON output that stays readable). */
export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * How `subject` compares with `peer`, both per-iteration times (lower is
 * faster): the ratio peer/subject (> 1 means the subject is faster) and a
 * sentence saying so, e.g. "crun/lxr = 1.25 → lxr is 1.25x faster".
 */
export function speedRatio(subjectName: string, subject: number, peerName: string, peer: number): { ratio: number; text: string } {
  const ratio = peer / subject;
  const head = `${peerName}/${subjectName} = ${ratio.toFixed(2)}`;
  if (!Number.isFinite(ratio) || ratio <= 0) return { ratio, text: `${head} (no comparison)` };
  if (ratio >= 1) return { ratio, text: `${head} → ${subjectName} is ${ratio.toFixed(2)}x faster` };
  return { ratio, text: `${head} → ${subjectName} is ${(1 / ratio).toFixed(2)}x slower` };
}

/** Splits `total` items into `parts` near-equal chunks (the first ones one larger). */
export function splitEvenly(total: number, parts: number): number[] {
  if (parts <= 0) return [];
  const base = Math.floor(total / parts);
  const extra = total % parts;
  return Array.from({ length: parts }, (_, i) => base + (i < extra ? 1 : 0));
}

/** A fixed-width text table; the first column left-aligned, the rest right-aligned. */
export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
