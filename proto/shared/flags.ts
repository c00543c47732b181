// Command-line flags the way every LXR command reads them: `--flag value`
// or `--flag=value`; a flag's value is taken only when its handler asks.

/**
 * Calls `on` for each argument with the flag's name and a `value()` that
 * consumes its value (the inline one, else the next argument); a missing
 * or empty value is an error naming the flag (made by `fail`).
 */
export function walkFlags(args: readonly string[], on: (flag: string, value: () => string, arg: string) => void, fail: (message: string) => Error = (m) => new Error(m)): void {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.indexOf('=');
    const [flag, inline] = a.startsWith('--') && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    on(
      flag,
      () => {
        const v = inline ?? args[++i];
        if (v === undefined || v === '') throw fail(`${flag} needs a value`);
        return v;
      },
      a,
    );
  }
}
