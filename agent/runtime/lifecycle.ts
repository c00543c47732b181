// The container lifecycle as an explicit state machine (runtime-spec
// states: creating, created, running, stopped). Every operation names the
// states it is legal in; anything else is FAILED_PRECONDITION naming the
// state the container is actually in.
import { illegalState } from '../../proto/shared/errors.js';
import type { Status } from './oci.js';

export type Operation = 'start' | 'kill' | 'delete' | 'force-delete' | 'exec' | 'stop';

const LEGAL: Record<Operation, readonly Status[]> = {
  start: ['created'],
  kill: ['created', 'running'],
  stop: ['created', 'running', 'stopped'],
  delete: ['created', 'stopped'],
  'force-delete': ['creating', 'created', 'running', 'stopped'],
  exec: ['running'],
};

export function isLegal(status: Status, op: Operation): boolean {
  return LEGAL[op].includes(status);
}

export function assertLegal(id: string, status: Status, op: Operation): void {
  if (!isLegal(status, op)) {
    throw illegalState('container', id, status, op === 'force-delete' ? 'delete' : op);
  }
}
