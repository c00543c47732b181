// Human quantities for scheduling reasons: an operator reads "needs 2.0 GiB
// memory, 512.0 MiB of 8.0 GiB unreserved" in an error, not raw byte counts.

/** Cpus with at most three decimals and no trailing zeros: 4, 1.5, 0.25. */
export function formatCpus(n: number): string {
  return String(Number(n.toFixed(3)));
}

const UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** Bytes in binary units with one decimal: 512 B, 512.0 MiB, 8.0 GiB. */
export function formatBytes(n: number): string {
  if (Math.abs(n) < 1024) return `${Math.round(n)} B`;
  let v = n;
  let unit: string = 'B';
  for (const u of UNITS) {
    if (Math.abs(v) < 1024) break;
    v /= 1024;
    unit = u;
  }
  return `${v.toFixed(1)} ${unit}`;
}
