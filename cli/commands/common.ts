// What several lxrctl commands check the same way: names (DNS labels, before
// any request is sent), K=V lists, and the -o output flag.
import { isDnsLabel } from '../../proto/shared/names.js';
import type { FlagSpec } from '../args.js';
import type { Invocation } from '../command.js';
import { invalid } from '../failure.js';

/** A workspace or host name, checked here so a bad one never reaches a server. */
export function checkName(v: string, what: 'workspace' | 'host' | 'credential'): string {
  if (!isDnsLabel(v)) {
    throw invalid(`${what} name ${JSON.stringify(v)} is not valid: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit (e.g. ws1, my-env)`);
  }
  return v;
}

export function parseKeyValues(list: readonly string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw invalid(`${flag} ${JSON.stringify(kv)} is not K=V`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

/** docker's -e: K=V, or K alone to pass this process's K on. */
export function parseEnv(list: readonly string[], local: NodeJS.ProcessEnv): string[] {
  return list.map((e) => {
    if (e === '' || e.startsWith('=')) throw invalid(`-e ${JSON.stringify(e)}: a variable needs a name (K=V)`);
    if (e.includes('=')) return e;
    const v = local[e];
    if (v === undefined) throw invalid(`-e ${e}: there is no ${e} here to pass on (write -e ${e}=VALUE)`);
    return `${e}=${v}`;
  });
}

export const outputFlag: FlagSpec = { name: 'output', short: 'o', kind: 'string', value: 'json|yaml|wide', help: 'print as JSON, YAML, or a wider table' };

/** The -o value, checked against what the command prints; '' for the default table. */
export function outputMode(inv: Invocation, allowed: readonly string[]): string {
  const o = inv.flag('output') ?? '';
  if (o !== '' && !allowed.includes(o)) throw invalid(`-o ${JSON.stringify(o)}: choose ${allowed.join(', ')}`);
  return o;
}
