// The IDEs a workspace can have, and the facts the agent (which runs one)
// and the controller (which serves it at /w/NAME/) must agree on. One place,
// so the port the agent binds is the port the controller proxies to.
import { invalidArgument } from './errors.js';

/** The IDEs LXR can run in a workspace; "" = none. */
export const IDES = ['code-server'] as const;
export type Ide = (typeof IDES)[number];

/** The port the IDE listens on, on the workspace's own address only. */
export const IDE_PORT = 13337;

/** Pinned versions: both come from the npm registry (see docs/ide.md). */
export const NODE_VERSION = '24.21.0';
export const CODE_SERVER_VERSION = '4.139.1';

/** Where the tools are mounted (read-only) inside a workspace. */
export const IDE_MOUNTS = { node: '/opt/lxr/node', codeServer: '/opt/lxr/code-server' } as const;

/** "" or a known IDE; else INVALID_ARGUMENT naming `field`. */
export function checkIde(v: unknown, field: string): Ide | '' {
  if (v === undefined || v === null || v === '') return '';
  if (typeof v === 'string' && (IDES as readonly string[]).includes(v)) return v as Ide;
  throw invalidArgument(field, `${JSON.stringify(v)} is not an IDE LXR runs: ${IDES.join(', ')} (or none)`);
}
