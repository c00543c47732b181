// How lxrctl fails: one line naming the problem, its reason from the error
// catalogue, and what to do next; and an exit code a script can act on.
// A status from the server is turned into this once, here.
import * as grpc from '@grpc/grpc-js';
import { fromStatus } from '../proto/shared/grpc-errors.js';
import { LxrError, type Reason } from '../proto/shared/errors.js';
import { UsageError } from './args.js';
import { escape } from './output.js';

/** Exit codes (README "lxrctl"): exec and attach exit with the remote process's status instead. */
export const Exit = {
  OK: 0,
  /** The server refused or the operation failed there. */
  FAILED: 1,
  /** Bad usage or input, found before or by the server. */
  INVALID: 2,
  /** The controller (or the host behind it) cannot be reached. */
  UNAVAILABLE: 3,
  /** What the command names does not exist. */
  NOT_FOUND: 4,
} as const;
export type ExitCode = (typeof Exit)[keyof typeof Exit];

export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exit: ExitCode,
    readonly reason: string,
    readonly hint: string = '',
  ) {
    super(message);
  }
}

export const invalid = (message: string, hint = ''): CliError => new CliError(message, Exit.INVALID, 'LXR_INVALID_ARGUMENT', hint);

const EXIT_OF: Partial<Record<Reason, ExitCode>> = {
  LXR_NOT_FOUND: Exit.NOT_FOUND,
  LXR_INVALID_ARGUMENT: Exit.INVALID,
  LXR_INVALID_SPEC: Exit.INVALID,
  LXR_UNAVAILABLE: Exit.UNAVAILABLE,
};

export const exitOf = (reason: string): ExitCode => EXIT_OF[reason as Reason] ?? Exit.FAILED;

/** What the user was doing, for the hint: the command and what it names. */
export interface FailureContext {
  command: string;
  server: string;
  /** The workspace, host or image the command names. */
  subject?: string;
}

/** The next step for a reason, in the words of the command at hand. */
export function hintFor(reason: string, message: string, ctx: FailureContext): string {
  const has = (w: string): boolean => message.includes(w);
  switch (reason) {
    case 'LXR_NOT_FOUND':
      if (has('image') || has('manifest') || has('repository') || has('blob')) return 'lxrctl images ls lists the images on each host; lxrctl images pull or import brings one';
      if (has('workspace')) return 'lxrctl ps -a lists the workspaces';
      if (has('host')) return 'lxrctl hosts ls lists the hosts';
      if (has('session')) return 'lxrctl exec ls WORKSPACE lists its sessions';
      return '';
    case 'LXR_ALREADY_EXISTS':
      return ctx.subject ? `choose another name, or remove it first (lxrctl rm -f ${ctx.subject})` : 'choose another name';
    case 'LXR_ILLEGAL_STATE':
      return ctx.subject ? `lxrctl inspect ${ctx.subject} shows its state and why` : '';
    case 'LXR_HOST_UNSCHEDULABLE':
    case 'LXR_NO_HOST_FITS':
      return 'lxrctl hosts ls shows each host\'s state and free capacity';
    case 'LXR_INVALID_ARGUMENT':
    case 'LXR_INVALID_SPEC':
      return `lxrctl ${ctx.command} --help shows the usage`;
    case 'LXR_UNAVAILABLE':
      if (/\bhost [a-z0-9-]+\b/.test(message)) return 'lxrctl hosts ls shows whether that host is Ready; the controller tries again when it is back';
      return 'is lxr-controller running there? (lxrctl lab up --controller starts a cluster on this machine; --server, --context or LXR_SERVER choose another; lxrctl config get-contexts lists contexts)';
    case 'LXR_PERMISSION_DENIED':
      if (has('unix socket')) return 'run it as root on the controller\'s machine (lxrctl --server unix:///run/lxr/controller.sock ...)';
      return 'the controller\'s unix socket is root-only: run as root, or use a context with credentials';
    case 'LXR_UNAUTHENTICATED':
      return 'the context needs a valid credential: lxrctl credentials create NAME (as root on the controller\'s machine) makes one; lxrctl config set-context NAME --token or --cert/--key stores it';
    case 'LXR_EXEC_NOT_FOUND':
      return 'the command does not exist in the workspace (check its PATH and the image)';
    default:
      return '';
  }
}

/** A transport failure (nothing answered), as grpc-js words it: no lxr-reason came back. */
const isTransport = (e: unknown): boolean => {
  const s = e as { code?: number; metadata?: { get(k: string): unknown[] } };
  return (s.code === grpc.status.UNAVAILABLE || s.code === grpc.status.DEADLINE_EXCEEDED) && !(s.metadata?.get('lxr-reason')?.length);
};

/** Any error of a command -> a CliError with its exit code and hint. */
export function toCliError(e: unknown, ctx: FailureContext): CliError {
  if (e instanceof CliError) return e;
  if (e instanceof UsageError) return new CliError(e.message, Exit.INVALID, 'LXR_INVALID_ARGUMENT', `lxrctl ${ctx.command} --help shows the usage`);
  if (isTransport(e)) {
    const detail = String((e as { details?: string }).details ?? '')
      .replace(/^No connection established\. Last error: (Error: )?/, '')
      .replace(/\.? ?Resolution note:.*$/, '')
      .replace(/ \/\S+$/, '');
    const msg = (e as { code?: number }).code === grpc.status.DEADLINE_EXCEEDED ? `the controller at ${ctx.server} did not answer in time` : `cannot reach the controller at ${ctx.server}${detail ? ` (${detail})` : ''}`;
    return new CliError(msg, Exit.UNAVAILABLE, 'LXR_UNAVAILABLE', hintFor('LXR_UNAVAILABLE', msg, ctx));
  }
  const lxr = e instanceof LxrError ? e : typeof (e as { code?: unknown })?.code === 'number' ? fromStatus(e) : null;
  if (lxr) return new CliError(lxr.message, exitOf(lxr.reason), lxr.reason, hintFor(lxr.reason, lxr.message, ctx));
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string' && err.syscall) {
    return new CliError(err.message, Exit.FAILED, 'LXR_INTERNAL', '');
  }
  return new CliError(e instanceof Error ? e.message : String(e), Exit.FAILED, 'LXR_INTERNAL', '');
}

/** The one line lxrctl prints for a failure (escaped: messages come from servers). */
export const failureLine = (e: CliError): string => `lxrctl: ${escape(e.message)} (${e.reason})${e.hint ? `; ${escape(e.hint)}` : ''}\n`;
