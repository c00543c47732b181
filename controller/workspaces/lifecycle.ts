// The workspace lifecycle as an explicit state machine: which state may
// follow which, and which operation a person may ask for in which state.
// An illegal transition or operation is FAILED_PRECONDITION naming the
// state. Unknown is never stored: it is what a workspace on a NotReady host
// is reported as, since nobody can tell what happens there.
import { illegalState, LxrError } from '../../proto/shared/errors.js';
import type { WorkspaceState } from '../../proto/shared/controller-types.js';

export type StoredState = Exclude<WorkspaceState, 'Unknown'>;

/** state -> the states it may move to (by the controller's own doing or what an agent reports). */
export const TRANSITIONS: Readonly<Record<StoredState, readonly StoredState[]>> = {
  // Placed and recorded; nothing asked of the agent yet.
  Pending: ['Creating', 'Failed'],
  // Pull, create, start on the agent; repeated after a controller crash.
  Creating: ['Creating', 'Running', 'Failed', 'Pending'],
  // Pending again when rescheduled off a host that went NotReady (--unready-policy reschedule).
  Running: ['Stopped', 'Failed', 'Pending'],
  // Stopped by a person, a drain, or by itself (its main process ended).
  Stopped: ['Running', 'Failed', 'Pending'],
  // Creating failed, or the container went missing; start makes it anew.
  Failed: ['Running', 'Pending', 'Stopped'],
};

export type Operation = 'start' | 'stop';

/** operation -> the states it is allowed in; 'noop' states answer at once. */
export const OPERATIONS: Readonly<Record<Operation, { from: readonly StoredState[]; noop: readonly StoredState[] }>> = {
  start: { from: ['Stopped', 'Failed'], noop: ['Running'] },
  stop: { from: ['Running'], noop: ['Stopped'] },
};

export function canTransition(from: StoredState, to: StoredState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Throws FAILED_PRECONDITION naming the state when `from -> to` is not allowed. */
export function checkTransition(name: string, from: StoredState, to: StoredState): void {
  if (!canTransition(from, to)) throw new LxrError('LXR_ILLEGAL_STATE', `workspace ${JSON.stringify(name)} cannot go from ${from} to ${to}`);
}

/** 'run' when the operation applies, 'noop' when the workspace is there already; throws otherwise. */
export function checkOperation(name: string, state: WorkspaceState, op: Operation): 'run' | 'noop' {
  if (state === 'Unknown') throw illegalState('workspace', name, 'Unknown (its host is NotReady)', op);
  const o = OPERATIONS[op];
  if (o.noop.includes(state)) return 'noop';
  if (o.from.includes(state)) return 'run';
  throw illegalState('workspace', name, state, op);
}
