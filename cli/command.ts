// One lxrctl command: its words (`images pull`), its arguments, and what it
// does given parsed arguments and the process's I/O. Commands return their
// exit code and throw for failures; main turns throws into one line.
import type { ArgsSpec, ParsedArgs } from './args.js';
import { resolveTarget, configPath, type Target } from './config.js';
import { Connection } from './connection.js';

export interface Io {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  stdin: NodeJS.ReadStream;
  env: NodeJS.ProcessEnv;
  now: () => number;
}

export class Invocation {
  private conn: Connection | null = null;
  private tgt: Target | null = null;

  constructor(
    readonly io: Io,
    readonly args: ParsedArgs,
  ) {}

  get configFile(): string {
    return configPath(this.io.env);
  }

  flag(name: string): string | undefined {
    const v = this.args.flags[name];
    return typeof v === 'string' ? v : undefined;
  }
  bool(name: string): boolean {
    return this.args.flags[name] === true;
  }
  int(name: string): number | undefined {
    const v = this.args.flags[name];
    return typeof v === 'number' ? v : undefined;
  }
  list(name: string): string[] {
    const v = this.args.flags[name];
    return Array.isArray(v) ? v : [];
  }

  /** Where the controller is (resolving reads the config file). */
  target(): Target {
    this.tgt ??= resolveTarget({ server: this.flag('server'), context: this.flag('context') }, this.io.env);
    return this.tgt;
  }

  connection(): Connection {
    this.conn ??= new Connection(this.target(), this.configFile);
    return this.conn;
  }

  /** Escape-free server address for messages ("" before one was resolved). */
  serverForMessages(): string {
    try {
      return this.target().address;
    } catch {
      return '';
    }
  }

  close(): void {
    this.conn?.close();
  }

  out(s: string): void {
    this.io.stdout.write(s);
  }
  err(s: string): void {
    this.io.stderr.write(s);
  }
}

export interface Command {
  /** The words that name it: ['images', 'pull']. */
  path: readonly string[];
  /** Its arguments after the flags, for the usage line: "NAME [-- CMD...]". */
  usage: string;
  summary: string;
  /** Longer help, examples. */
  details?: string;
  args: ArgsSpec;
  /** What the failure hint should name (a workspace, host or image). */
  subject?: (a: ParsedArgs) => string | undefined;
  run(inv: Invocation): Promise<number>;
}
