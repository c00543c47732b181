// What lxrctl prints: aligned tables, JSON and YAML, ages and sizes. Every
// string that came from a server goes through escape() (or an encoder that
// escapes) so a name or message carrying terminal control sequences can
// never drive the user's terminal.

/** C0 and C1 controls, DEL, and the bidi/zero-width marks that can hide or reorder text. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\u001b': '\\e' };

const hex = (c: string): string => {
  const n = c.codePointAt(0)!;
  return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
};

/** A server's string made safe for the terminal: controls become visible escapes. */
export const escape = (s: string): string => s.replace(CONTROL, (c) => NAMED[c] ?? hex(c));

/** What JSON.stringify leaves raw inside strings (it escapes C0 itself; raw C0 in its output is layout). */
const NOT_ESCAPED_BY_JSON = /[\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;
const uEscape = (c: string): string => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`;

/** JSON with every control and bidi mark escaped (JSON.stringify leaves C1 and DEL as they are). */
export const toJson = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) => (Buffer.isBuffer(x) ? x.toString('base64') : x), 2).replace(NOT_ESCAPED_BY_JSON, uEscape) + '\n';

const PLAIN = /^[A-Za-z0-9_./+][A-Za-z0-9_./@+:=-]*$/;
const AMBIGUOUS = /^(true|false|yes|no|on|off|y|n|null|~|[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?|0x[0-9a-fA-F]+|0o[0-7]+|\.inf|\.nan)$/i;

const yamlString = (s: string): string => (PLAIN.test(s) && !AMBIGUOUS.test(s) ? s : JSON.stringify(s).replace(NOT_ESCAPED_BY_JSON, uEscape));

const yamlScalar = (v: unknown): string => {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return yamlString(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Buffer.isBuffer(v)) return yamlString(v.toString('base64'));
  return yamlString(String(v));
};

const isComposite = (v: unknown): v is Record<string, unknown> | unknown[] => typeof v === 'object' && v !== null && !Buffer.isBuffer(v);

function yamlLines(v: unknown, indent: string): string[] {
  if (Array.isArray(v)) {
    if (v.length === 0) return [`${indent}[]`];
    const out: string[] = [];
    for (const item of v) {
      if (isComposite(item) && (Array.isArray(item) ? item.length : Object.keys(item).length) > 0) {
        const inner = yamlLines(item, indent + '  ');
        out.push(`${indent}- ${inner[0]!.slice(indent.length + 2)}`, ...inner.slice(1));
      } else out.push(`${indent}- ${isComposite(item) ? (Array.isArray(item) ? '[]' : '{}') : yamlScalar(item)}`);
    }
    return out;
  }
  if (isComposite(v)) {
    const keys = Object.keys(v);
    if (keys.length === 0) return [`${indent}{}`];
    const out: string[] = [];
    for (const k of keys) {
      const x = (v as Record<string, unknown>)[k];
      if (isComposite(x) && (Array.isArray(x) ? x.length : Object.keys(x).length) > 0) {
        out.push(`${indent}${yamlString(k)}:`, ...yamlLines(x, Array.isArray(x) ? indent : indent + '  '));
      } else out.push(`${indent}${yamlString(k)}: ${isComposite(x) ? (Array.isArray(x) ? '[]' : '{}') : yamlScalar(x)}`);
    }
    return out;
  }
  return [`${indent}${yamlScalar(v)}`];
}

/** YAML (block style, strings quoted only when they must be); controls escaped. */
export const toYaml = (v: unknown): string => yamlLines(v, '').join('\n') + '\n';

/** Columns aligned with three spaces between them, as docker ps prints; cells escaped. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const cells = rows.map((r) => r.map((c) => escape(c)));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('   ')
      .trimEnd();
  return [line(headers), ...cells.map(line)].join('\n') + '\n';
}

/** kubectl's age: 42s, 7m, 3h, 12d; "" for no time. */
export function age(iso: string, now = Date.now()): string {
  const t = Date.parse(iso);
  if (!iso || Number.isNaN(t)) return '';
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 120 * 60) return `${Math.floor(s / 60)}m`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 -> "1.5KiB". */
export function bytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v}B` : `${v >= 100 ? Math.round(v) : Number(v.toFixed(1))}${UNITS[u]}`;
}

const SIZE = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$/i;
const MULT: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** docker's sizes: 512m, 1g, 1.5GiB, 1048576 (binary multiples). Throws a message naming the input. */
export function parseSize(s: string): number {
  const m = SIZE.exec(s.trim());
  if (!m) throw new Error(`${JSON.stringify(s)} is not a size (examples: 512m, 2g, 1.5GiB, 1048576)`);
  const n = Math.round(Number(m[1]) * MULT[m[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${JSON.stringify(s)} is not a size above zero`);
  return n;
}

const DURATION = /^(\d+)(s|m|h|d)$/;
const SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** A duration (30s, 10m, 2h, 30d) in seconds. */
export function parseDuration(s: string): number {
  const d = DURATION.exec(s);
  if (!d || Number(d[1]) === 0) throw new Error(`${JSON.stringify(s)} is not a duration (30s, 10m, 2h, 30d)`);
  return Number(d[1]) * SECONDS[d[2]!]!;
}

/** docker's --since: an RFC 3339 time, or a duration back from now (10m, 2h); as RFC 3339. */
export function parseSince(s: string, now = Date.now()): string {
  const d = DURATION.exec(s);
  if (d) return new Date(now - Number(d[1]) * SECONDS[d[2]!]! * 1000).toISOString();
  if (/^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2})?)?$/.test(s) && !Number.isNaN(Date.parse(s))) return new Date(s).toISOString();
  throw new Error(`${JSON.stringify(s)} is neither a duration (30s, 10m, 2h, 1d) nor an RFC 3339 time (2026-11-23T10:00:00Z)`);
}
