// Names in LXR are DNS labels: workspace and host names become container
// names, hostnames and URL paths. One check, used by the controller before
// it stores a name and by lxrctl before it sends one.
import { invalidArgument } from './errors.js';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export const isDnsLabel = (v: string): boolean => DNS_LABEL.test(v);

export function checkDnsLabel(v: string | undefined, field: string): string {
  if (!v) throw invalidArgument(field, 'required');
  if (!DNS_LABEL.test(v)) throw invalidArgument(field, `${JSON.stringify(v)} is not a DNS label: 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit`);
  return v;
}
