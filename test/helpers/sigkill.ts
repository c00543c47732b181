// A writer killed with SIGKILL at a chosen moment: the crash that the
// durability of the journals is tested against. The writer is an ESM
// script run by a child node; what it printed before the kill is what it
// was told was done.
import { spawn } from 'node:child_process';

/**
 * Runs `script` (ESM, passed to `node --input-type=module -e`), kills it with
 * SIGKILL `delayMs` after its first output (before that it is still
 * starting and there is nothing to crash) and returns its stdout. Throws
 * when it ends by itself or prints nothing within 10 s.
 */
export async function runUntilKilled(script: string, delayMs: number): Promise<string> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const ended = new Promise<NodeJS.Signals | null>((resolve) => child.once('close', (_code, signal) => resolve(signal)));
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the writer printed nothing within 10 s')), 10_000);
      child.stdout.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      void ended.then(() => {
        clearTimeout(timer);
        reject(new Error(`the writer ended before printing anything: ${err.trim() || '(no stderr)'}`));
      });
    });
    await Promise.race([new Promise((r) => setTimeout(r, delayMs)), ended]);
  } finally {
    child.kill('SIGKILL');
  }
  const signal = await ended;
  if (signal !== 'SIGKILL') throw new Error(`the writer ended by itself before the kill: ${err.trim() || '(no stderr)'}`);
  return out;
}
