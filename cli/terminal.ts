// The user's terminal during an interactive exec, as ssh treats it: raw
// mode while the session is attached and always restored afterwards (on
// exit, signals and crashes), window sizes forwarded, and a detach key
// sequence (ctrl-p ctrl-q, as docker) that leaves the session running.

/** Key names as docker's --detach-keys reads them: "ctrl-p,ctrl-q", "a", "ctrl-@". */
export function parseDetachKeys(spec: string): Buffer {
  const out: number[] = [];
  for (const part of spec.split(',')) {
    const k = part.trim().toLowerCase();
    const ctrl = /^ctrl-(.)$/.exec(k);
    if (ctrl) {
      const c = ctrl[1]!;
      if (c >= 'a' && c <= 'z') out.push(c.charCodeAt(0) - 96);
      else if (c === '@') out.push(0);
      else if (c === '[') out.push(27);
      else if (c === '\\') out.push(28);
      else if (c === ']') out.push(29);
      else if (c === '^') out.push(30);
      else if (c === '_') out.push(31);
      else throw new Error(`detach key ${JSON.stringify(part)}: ctrl- takes a-z, @, [, \\, ], ^ or _`);
    } else if (k.length === 1 && k >= ' ' && k <= '~') out.push(k.charCodeAt(0));
    else throw new Error(`detach key ${JSON.stringify(part)} is neither a printable character nor ctrl-KEY`);
  }
  if (out.length === 0) throw new Error('detach keys: none given');
  return Buffer.from(out);
}

/**
 * Finds the detach sequence in typed input. Bytes that might start the
 * sequence are held back until the next chunk tells; bytes that turn out
 * not to be the sequence are passed on unchanged, in order.
 */
export class DetachScanner {
  /** The bytes held back: always a prefix of the sequence. */
  private held: number[] = [];

  constructor(private readonly seq: Buffer) {}

  private isPrefix(b: readonly number[]): boolean {
    return b.length <= this.seq.length && b.every((x, i) => x === this.seq[i]);
  }

  /** What to send on, and whether the sequence was completed (what follows it is dropped). */
  feed(chunk: Buffer): { forward: Buffer; detach: boolean } {
    const out: number[] = [];
    for (const b of chunk) {
      this.held.push(b);
      // Release bytes from the front until what is held could still begin the sequence
      // (so with keys a,a,b the input a,a,a,b still detaches).
      while (!this.isPrefix(this.held)) out.push(this.held.shift()!);
      if (this.held.length === this.seq.length) {
        this.held = [];
        return { forward: Buffer.from(out), detach: true };
      }
    }
    return { forward: Buffer.from(out), detach: false };
  }
}

/** Raw mode on a TTY stdin, undone by restore() and on every way out of the process. */
export class RawMode {
  private on = false;
  private readonly undo = (): void => this.restore();

  constructor(private readonly stdin: NodeJS.ReadStream) {}

  enter(): void {
    if (!this.stdin.isTTY || this.on) return;
    this.stdin.setRawMode(true);
    this.on = true;
    process.on('exit', this.undo);
  }

  restore(): void {
    if (!this.on) return;
    this.on = false;
    try {
      this.stdin.setRawMode(false);
    } catch {
      // The terminal is gone (hung up): nothing to restore.
    }
    process.off('exit', this.undo);
  }
}
