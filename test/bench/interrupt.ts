// Ctrl-C and SIGTERM during a benchmark: the first signal kills the process
// groups the bench is timing and makes every loop stop at its next check,
// so the bench's own cleanup runs; a second signal exits at once.
import type { ChildProcess } from 'node:child_process';

export class Interrupted extends Error {}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let interrupted: string | null = null;
let leftover = '';
const children = new Set<ChildProcess>();

function onSignal(sig: NodeJS.Signals): void {
  if (interrupted) {
    process.stderr.write(`lxr-bench: second ${sig}, exiting without cleanup; ${leftover} may be left\n`);
    process.exit(130);
  }
  interrupted = sig;
  process.stderr.write(`lxr-bench: ${sig}: stopping and cleaning up (again to exit at once)\n`);
  // Each tracked child leads its own process group: this ends it and what it runs.
  for (const c of children) {
    try {
      if (c.pid) process.kill(-c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Installs the handlers for one bench run; `leftoverHint` names what an exit without cleanup leaves. */
export function catchInterrupts(leftoverHint: string): () => void {
  leftover = leftoverHint;
  for (const s of SIGNALS) process.on(s, onSignal);
  return () => {
    for (const s of SIGNALS) process.off(s, onSignal);
  };
}

/** Throws Interrupted once a signal came: loops call it between steps. */
export function checkInterrupted(): void {
  if (interrupted) throw new Interrupted(`interrupted by ${interrupted}`);
}

/** Waits for a child spawned with `detached: true`, killing its group on interrupt; its exit code. */
export function trackChild(child: ChildProcess): Promise<number | null> {
  children.add(child);
  return new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c));
  }).finally(() => children.delete(child));
}
