// Facts about processes that several components need to be safe with pids:
// a pid recorded with its start time can be told apart from a later
// process that reused the number.
import { readFileSync } from 'node:fs';

/** The fields of /proc/PID/stat after the command name (state first); null when there is no such process. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** Field 22 (starttime) of /proc/PID/stat; null when there is no such process. */
export function startTimeSync(pid: number): string | null {
  return statFields(pid)?.[19] ?? null;
}

/** Whether the process exists and is not a zombie (a zombie has ended; it only waits to be reaped). */
export function processRunning(pid: number): boolean {
  const f = statFields(pid);
  return f !== null && f[0] !== 'Z';
}
