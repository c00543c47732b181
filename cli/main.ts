// lxrctl: the CLI over the controller's API, with docker's and kubectl's
// words. main finds the command, parses its arguments, runs it, and turns
// any failure into one line and an exit code (cli/failure.ts).
import { flagHelp, GLOBAL_FLAGS, parseArgs, UsageError } from './args.js';
import { Invocation, type Command, type Io } from './command.js';
import { completionCommand } from './commands/completion.js';
import { configCommands } from './commands/config.js';
import { credentialCommands } from './commands/credentials.js';
import { portForwardCommands } from './commands/port-forward.js';
import { execCommands } from './commands/exec.js';
import { hostCommands } from './commands/hosts.js';
import { imageCommands } from './commands/images.js';
import { labCommands } from './commands/lab.js';
import { versionCommand } from './commands/version.js';
import { workspaceCommands } from './commands/workspaces.js';
import { Exit, failureLine, toCliError } from './failure.js';

export const COMMANDS: Command[] = [...workspaceCommands, ...execCommands, ...hostCommands, ...imageCommands, ...labCommands, ...configCommands, ...credentialCommands, ...portForwardCommands, versionCommand];
COMMANDS.push(completionCommand(() => COMMANDS));

const GROUPS: Record<string, string> = {
  hosts: 'the cluster\'s hosts',
  images: 'images on the hosts',
  lab: 'a cluster on this machine',
  config: 'contexts: where lxrctl finds its controller',
};

const overview = (): string => {
  const top = COMMANDS.filter((c) => c.path.length === 1 && !GROUPS[c.path[0]!]);
  const w = Math.max(...[...top.map((c) => c.path[0]!), ...Object.keys(GROUPS)].map((s) => s.length));
  return (
    'lxrctl: development workspaces on LXR\n\nusage: lxrctl COMMAND [ARGS] [flags]\n\ncommands:\n' +
    top.map((c) => `  ${c.path[0]!.padEnd(w)}   ${c.summary}\n`).join('') +
    Object.entries(GROUPS)
      .map(([g, s]) => `  ${g.padEnd(w)}   ${s}: ${COMMANDS.filter((c) => c.path[0] === g && c.path.length === 2).map((c) => c.path[1]).join(', ')}\n`)
      .join('') +
    `\nflags for every command:\n${flagHelp(GLOBAL_FLAGS)}\n\nlxrctl COMMAND --help shows a command's flags. Exit codes: 0 ok, 1 failed, 2 invalid input, 3 controller unreachable, 4 not found; exec and attach exit with the remote command's status.\n`
  );
};

const usageLine = (c: Command): string => `usage: lxrctl ${c.path.join(' ')}${c.usage ? ` ${c.usage}` : ''}`;

const helpOf = (c: Command): string => `${usageLine(c)}\n\n${c.summary}\n${c.details ? `\n${c.details}\n` : ''}${c.args.flags.length ? `\nflags:\n${flagHelp(c.args.flags)}\n` : ''}`;

const groupHelp = (g: string): string =>
  `usage: lxrctl ${g} COMMAND\n\n${GROUPS[g]}:\n` +
  COMMANDS.filter((c) => c.path[0] === g && c.path.length === 2)
    .map((c) => `  ${c.path[1]!.padEnd(14)} ${c.summary}\n`)
    .join('');

/** The command named by the leading words (the longest match), and the rest. */
export function findCommand(argv: readonly string[]): { command: Command | null; rest: string[]; words: string[] } {
  // The command's words: the first argument that is not a flag, and the one right after it,
  // global flags (--server X, --context X, --server=X) skipped before and between them.
  const words: string[] = [];
  for (let i = 0; i < argv.length && words.length < 2; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a === '--server' || a === '--context') i++;
    else if (a.startsWith('--server=') || a.startsWith('--context=')) continue;
    else if (a.startsWith('-')) {
      if (words.length > 0) break;
    } else words.push(a);
  }
  // `exec ls NAME` lists sessions only without a command to run (`exec ls -- CMD` runs CMD in workspace "ls").
  const wantsSessions = words[0] === 'exec' && words[1] === 'ls' && !argv.includes('--');
  let best: Command | null = null;
  for (const c of COMMANDS) {
    if (c.path.length > words.length) continue;
    if (!c.path.every((w, i) => words[i] === w)) continue;
    if (c.path.join(' ') === 'exec ls' && !wantsSessions) continue;
    if (!best || c.path.length > best.path.length) best = c;
  }
  // `images bogus` is not `images` (= images ls) with an argument.
  if (!best || (best.path.length === 1 && GROUPS[best.path[0]!] && words.length > 1)) return { command: null, rest: [...argv], words };
  // Drop the command's words from argv (flags before them stay).
  const rest: string[] = [];
  let dropped = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (dropped < best.path.length && (a === '--server' || a === '--context')) {
      rest.push(a);
      if (i + 1 < argv.length) rest.push(argv[++i]!);
    }
    else if (dropped < best.path.length && a === best.path[dropped]) dropped++;
    else rest.push(a);
  }
  return { command: best, rest, words };
}

export async function main(argv: string[], io: Io): Promise<number> {
  if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
    const topic = argv[0] === 'help' ? argv.slice(1) : [];
    const found = topic.length ? findCommand(topic) : null;
    if (found?.command) io.stdout.write(helpOf(found.command));
    else if (topic.length && GROUPS[topic[0]!]) io.stdout.write(groupHelp(topic[0]!));
    else io.stdout.write(overview());
    return argv.length === 0 ? Exit.INVALID : Exit.OK;
  }
  if (argv[0] === '--version') argv = ['version', '--client'];
  const { command, rest, words } = findCommand(argv);
  if (!command) {
    const g = words[0] && GROUPS[words[0]] ? words[0] : null;
    if (g && (argv.includes('--help') || argv.includes('-h') || words.length === 1)) {
      io.stdout.write(groupHelp(g));
      return words.length === 1 && !argv.includes('--help') && !argv.includes('-h') ? Exit.INVALID : Exit.OK;
    }
    if (words.length === 0) {
      io.stderr.write('lxrctl: no command given (LXR_INVALID_ARGUMENT); lxrctl --help lists the commands\n');
      return Exit.INVALID;
    }
    const what = g ? `${g} ${words[1] ?? ''}`.trim() : words[0]!;
    io.stderr.write(`lxrctl: unknown command ${JSON.stringify(what)} (LXR_INVALID_ARGUMENT); lxrctl ${g ?? '--help'}${g ? ' --help' : ''} lists the commands\n`);
    return Exit.INVALID;
  }
  const where = `lxrctl ${command.path.join(' ')}`;
  let inv: Invocation | null = null;
  try {
    const args = parseArgs(rest, command.args, where);
    if (args.flags['help']) {
      io.stdout.write(helpOf(command));
      return Exit.OK;
    }
    inv = new Invocation(io, args);
    return await command.run(inv);
  } catch (e) {
    const err = toCliError(e, { command: command.path.join(' '), server: inv?.serverForMessages() ?? '', subject: safeSubject(command, rest) });
    io.stderr.write(failureLine(err));
    if (e instanceof UsageError) io.stderr.write(`${usageLine(command)}\n`);
    return err.exit;
  } finally {
    inv?.close();
  }
}

function safeSubject(c: Command, rest: string[]): string | undefined {
  try {
    return c.subject?.(parseArgs(rest, c.args, ''));
  } catch {
    return undefined;
  }
}

/** Runs lxrctl in this process and exits with its code once output is flushed. */
export function run(): void {
  const io: Io = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, now: Date.now };
  // A closed pipe on stdout (lxrctl ps | head): exit as a process killed by SIGPIPE would.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(128 + 13);
  });
  main(process.argv.slice(2), io).then(
    (code) => {
      process.exitCode = code;
      // Streams and channels may hold the loop open; output is flushed by the time stdout drains.
      if (process.stdout.writableLength === 0) process.exit(code);
      else process.stdout.once('drain', () => process.exit(code));
    },
    (e: unknown) => {
      process.stderr.write(`lxrctl: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(Exit.FAILED);
    },
  );
}
