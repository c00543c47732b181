// Command lines the way docker and kubectl users type them: long flags
// (`--tail 5`, `--tail=5`), short ones (`-n 5`), bundled booleans (`-it`),
// repeated flags (`-e A=1 -e B=2`), and `--` before a command that is
// passed on untouched. Parsing is pure: a spec in, values or a usage error out.

export type FlagKind = 'bool' | 'string' | 'list' | 'int';

export interface FlagSpec {
  /** Long name without dashes: "tail". */
  name: string;
  short?: string;
  kind: FlagKind;
  help: string;
  /** Shown in help for valued flags: N, SIZE, K=V ... */
  value?: string;
}

export interface ArgsSpec {
  flags: readonly FlagSpec[];
  /** Names of the positional arguments, for help and for "missing NAME". */
  positionals: readonly string[];
  /** How many positionals are required (the rest are optional). */
  required: number;
  /** Takes more positionals than named (NAME...). */
  variadic?: boolean;
  /**
   * Takes a command after its positionals: everything after `--`, or, once
   * the positionals are filled, every argument from the first one that is
   * not a flag of ours (as `docker exec ws ls -l`).
   */
  command?: boolean;
}

export type FlagValue = boolean | string | string[] | number;

export interface ParsedArgs {
  flags: Record<string, FlagValue | undefined>;
  positionals: string[];
  command: string[];
}

/** Bad usage: exit code 2, with the command's usage line. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const GLOBAL_FLAGS: readonly FlagSpec[] = [
  { name: 'server', kind: 'string', value: 'ADDRESS', help: 'the controller: unix:///PATH or HOST:PORT (else LXR_SERVER, else the context)' },
  { name: 'context', kind: 'string', value: 'NAME', help: 'a context of the config file (else LXR_CONTEXT, else its current context)' },
  { name: 'help', short: 'h', kind: 'bool', help: 'show help' },
];

const INT = /^-?\d+$/;

export function parseArgs(argv: readonly string[], spec: ArgsSpec, where: string): ParsedArgs {
  const all = [...spec.flags, ...GLOBAL_FLAGS];
  const byLong = new Map(all.map((f) => [f.name, f]));
  const byShort = new Map(all.filter((f) => f.short).map((f) => [f.short!, f]));
  const out: ParsedArgs = { flags: {}, positionals: [], command: [] };
  const set = (f: FlagSpec, raw: string | undefined, shown: string): void => {
    if (f.kind === 'bool') {
      if (raw === undefined || raw === 'true') out.flags[f.name] = true;
      else if (raw === 'false') out.flags[f.name] = false;
      else throw new UsageError(`${shown} takes no value (or =true/=false), got ${JSON.stringify(raw)}`);
      return;
    }
    if (raw === undefined || raw === '') throw new UsageError(`${shown} needs a value${f.value ? ` (${f.value})` : ''}`);
    if (f.kind === 'int') {
      if (!INT.test(raw)) throw new UsageError(`${shown} wants a whole number, got ${JSON.stringify(raw)}`);
      out.flags[f.name] = Number(raw);
    } else if (f.kind === 'list') {
      const prev = out.flags[f.name];
      out.flags[f.name] = [...(Array.isArray(prev) ? prev : []), raw];
    } else out.flags[f.name] = raw;
  };
  const full = (): boolean => !spec.variadic && out.positionals.length >= spec.positionals.length;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      if (!spec.command) throw new UsageError(`${where} takes no command after --`);
      out.command = argv.slice(i + 1);
      break;
    }
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      const f = byLong.get(name);
      if (!f) throw new UsageError(`unknown flag --${name} for ${where}`);
      const inline = eq > 0 ? a.slice(eq + 1) : undefined;
      set(f, f.kind === 'bool' || inline !== undefined ? inline : argv[++i], `--${name}`);
      continue;
    }
    if (a.startsWith('-') && a.length > 1 && !INT.test(a)) {
      // -it, -e K=V, -eK=V, -n5
      for (let j = 1; j < a.length; j++) {
        const f = byShort.get(a[j]!);
        if (!f) throw new UsageError(`unknown flag -${a[j]} for ${where}`);
        if (f.kind === 'bool') {
          set(f, undefined, `-${f.short}`);
          continue;
        }
        const rest = a.slice(j + 1);
        set(f, rest !== '' ? rest : argv[++i], `-${f.short}`);
        break;
      }
      continue;
    }
    if (spec.command && full()) {
      out.command = argv.slice(i);
      break;
    }
    if (full()) throw new UsageError(`${where} takes ${spec.positionals.length === 0 ? 'no arguments' : `at most ${spec.positionals.length} argument${spec.positionals.length > 1 ? 's' : ''} (${spec.positionals.join(' ')})`}, got ${JSON.stringify(a)}`);
    out.positionals.push(a);
  }
  if (!out.flags['help'] && out.positionals.length < spec.required) {
    throw new UsageError(`${where} needs ${spec.positionals.slice(out.positionals.length, spec.required).join(' ')}`);
  }
  return out;
}

/** Help text for a command's flags, aligned. */
export function flagHelp(flags: readonly FlagSpec[]): string {
  const rows = flags.map((f) => [`${f.short ? `-${f.short}, ` : '    '}--${f.name}${f.value ? ` ${f.value}` : ''}`, f.help] as const);
  const w = Math.max(0, ...rows.map((r) => r[0].length));
  return rows.map(([l, h]) => `  ${l.padEnd(w)}   ${h}`).join('\n');
}
