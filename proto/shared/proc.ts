// Facts about processes that several components need to be safe with pids:
// a pid recorded with its start time can be told apart from a later
// process that reused the number.
import { readFileSync } from 'node:fs';

/** Field 22 (starttime) of /proc/PID/stat; null when there is no such process. */
export function startTimeSync(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}
