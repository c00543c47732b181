// Exec session ids as the controller gives them: WORKSPACE/ID, where ID is
// the agent's own session id. The controller makes and splits them; lxrctl
// checks them before it asks.
import { invalidArgument } from './errors.js';

export const sessionIdOf = (workspace: string, agentSession: string): string => `${workspace}/${agentSession}`;

/** Splits a controller session id into workspace and agent session id (INVALID_ARGUMENT naming attach.session_id). */
export function splitSessionId(id: string | undefined): { workspace: string; session: string } {
  const i = (id ?? '').indexOf('/');
  if (i <= 0 || i === id!.length - 1) throw invalidArgument('attach.session_id', `${JSON.stringify(id ?? '')} is not a session id of this controller (WORKSPACE/ID)`);
  return { workspace: id!.slice(0, i), session: id!.slice(i + 1) };
}
