// The error catalogue shared by every LXR component: each error is a gRPC
// status code plus a stable, machine-readable reason. Services throw LxrError;
// the gRPC adapters convert it to a status exactly once, at the boundary.

/** gRPC status codes, by number, so plain services never import grpc. */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;
export type CodeNumber = (typeof Code)[keyof typeof Code];

/** The catalogue: reason -> status code. Reasons are stable API. */
export const Reasons = {
  LXR_INVALID_ARGUMENT: Code.INVALID_ARGUMENT,
  LXR_INVALID_SPEC: Code.INVALID_ARGUMENT,
  LXR_NOT_FOUND: Code.NOT_FOUND,
  LXR_ALREADY_EXISTS: Code.ALREADY_EXISTS,
  LXR_ILLEGAL_STATE: Code.FAILED_PRECONDITION,
  LXR_PERMISSION_DENIED: Code.PERMISSION_DENIED,
  LXR_EXEC_NOT_FOUND: Code.NOT_FOUND,
  LXR_EXEC_NOT_EXECUTABLE: Code.PERMISSION_DENIED,
  LXR_RESOURCE_EXHAUSTED: Code.RESOURCE_EXHAUSTED,
  LXR_SUBNET_EXHAUSTED: Code.RESOURCE_EXHAUSTED,
  LXR_IP_EXHAUSTED: Code.RESOURCE_EXHAUSTED,
  LXR_UNSUPPORTED: Code.UNIMPLEMENTED,
  // A compare-and-set in the controller's store lost a race; retry.
  LXR_CONFLICT: Code.ABORTED,
  // No host can take a workspace: the message says why for each host.
  LXR_NO_HOST_FITS: Code.RESOURCE_EXHAUSTED,
  // The pinned host exists but cannot take the workspace (cordoned, NotReady, full).
  LXR_HOST_UNSCHEDULABLE: Code.FAILED_PRECONDITION,
  LXR_UNAVAILABLE: Code.UNAVAILABLE,
  // No credential, or one this cluster does not accept (other CA, expired, revoked, wrong token).
  LXR_UNAUTHENTICATED: Code.UNAUTHENTICATED,
  LXR_HOST_SETUP_FAILED: Code.INTERNAL,
  LXR_CLEANUP_FAILED: Code.INTERNAL,
  LXR_INTERNAL: Code.INTERNAL,
} as const;
export type Reason = keyof typeof Reasons;

export interface LxrErrorOptions {
  /** The request or spec field at fault, e.g. "process.args" or "linux.namespaces[2].type". */
  field?: string;
  /** errno name when a kernel call failed, e.g. "EPERM". */
  errno?: string;
  /** The step that failed, e.g. "mount /proc". */
  step?: string;
  cause?: unknown;
}

export class LxrError extends Error {
  readonly reason: Reason;
  readonly code: CodeNumber;
  readonly field?: string;
  readonly errno?: string;
  readonly step?: string;

  constructor(reason: Reason, message: string, opts: LxrErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'LxrError';
    this.reason = reason;
    this.code = Reasons[reason];
    if (opts.field !== undefined) this.field = opts.field;
    if (opts.errno !== undefined) this.errno = opts.errno;
    if (opts.step !== undefined) this.step = opts.step;
  }
}

export const invalidSpec = (field: string, problem: string): LxrError =>
  new LxrError('LXR_INVALID_SPEC', `invalid config: ${field}: ${problem}`, { field });

export const invalidArgument = (field: string, problem: string): LxrError =>
  new LxrError('LXR_INVALID_ARGUMENT', `invalid argument ${field}: ${problem}`, { field });

/** A credential that is missing or not accepted; the message says which and why. */
export const unauthenticated = (message: string): LxrError => new LxrError('LXR_UNAUTHENTICATED', message);

export const notFound = (what: string, name: string): LxrError =>
  new LxrError('LXR_NOT_FOUND', `${what} ${JSON.stringify(name)} not found`);

export const alreadyExists = (what: string, name: string): LxrError =>
  new LxrError('LXR_ALREADY_EXISTS', `${what} ${JSON.stringify(name)} already exists`);

/** An operation the lifecycle does not allow in the current state; names the state. */
export const illegalState = (what: string, name: string, state: string, op: string): LxrError =>
  new LxrError('LXR_ILLEGAL_STATE', `cannot ${op} ${what} ${JSON.stringify(name)}: it is ${state}`);

export const isLxrError = (e: unknown): e is LxrError => e instanceof LxrError;

/** Wraps anything thrown into an LxrError (INTERNAL unless it already is one). */
export function asLxrError(e: unknown): LxrError {
  if (e instanceof LxrError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const errno = (err as NodeJS.ErrnoException).code;
  return new LxrError('LXR_INTERNAL', err.message, { cause: err, ...(errno ? { errno } : {}) });
}

/**
 * Never let a cleanup failure hide the original error: the result keeps the
 * original's reason and code, and its message names both failures.
 */
export function withCleanupFailure(original: unknown, cleanup: unknown): LxrError {
  return withSecondFailure(original, cleanup, 'cleanup');
}

/** withCleanupFailure for any second failure: `what` says what else failed. */
export function withSecondFailure(original: unknown, second: unknown, what: string): LxrError {
  const orig = asLxrError(original);
  const other = second instanceof Error ? second.message : String(second);
  const merged = new LxrError(orig.reason, `${orig.message}; ${what} also failed: ${other}`, {
    cause: new AggregateError([original, second], `operation and ${what} both failed`),
    ...(orig.field !== undefined ? { field: orig.field } : {}),
    ...(orig.errno !== undefined ? { errno: orig.errno } : {}),
    ...(orig.step !== undefined ? { step: orig.step } : {}),
  });
  return merged;
}

/**
 * Runs cleanup steps in order (all of them, even when one fails) and returns
 * the failures; callers merge them with withCleanupFailure.
 */
export async function runCleanups(steps: Array<() => Promise<void> | void>): Promise<unknown[]> {
  const failures: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (e) {
      failures.push(e);
    }
  }
  return failures;
}

/** Throws `original` (merged with cleanup failures if any) after running cleanups. */
export async function failAfterCleanup(original: unknown, steps: Array<() => Promise<void> | void>): Promise<never> {
  const failures = await runCleanups(steps);
  if (failures.length === 0) throw original;
  throw withCleanupFailure(original, failures.length === 1 ? failures[0] : new AggregateError(failures, failures.map((f) => (f instanceof Error ? f.message : String(f))).join('; ')));
}
