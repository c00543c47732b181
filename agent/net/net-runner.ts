// Carries out network plans (net-plan.ts) with iproute2: steps for the
// host run in the agent's own network namespace (or, for tests, in the
// namespace of a given process, so a lab never touches the machine's own),
// steps for a container run inside its namespace through nsenter. The fake
// records the steps, and can be told to fail one.
import { execFile } from 'node:child_process';
import { LxrError } from '../../proto/shared/errors.js';
import type { NetStep } from './net-plan.js';

export interface NetRunner {
  /** Runs a step; its standard output. */
  run(step: NetStep): Promise<string>;
}

export const formatStep = (s: NetStep): string => `${s.ns === 'host' ? 'host' : `netns of ${s.ns.pid}`}: ${s.cmd ?? 'ip'} ${s.args.join(' ')}`;

export class LinuxNetRunner implements NetRunner {
  /** hostPid: run host steps in this process's network namespace instead of the agent's. */
  constructor(private readonly o: { hostPid?: number } = {}) {}

  run(step: NetStep): Promise<string> {
    const pid = step.ns === 'host' ? this.o.hostPid : step.ns.pid;
    const prog = step.cmd ?? 'ip';
    const [cmd, args] = pid === undefined ? [prog, step.args] : ['nsenter', ['-t', String(pid), '-n', prog, ...step.args]];
    return new Promise((resolve, reject) => {
      execFile(cmd, args, { timeout: 10_000 }, (err, out, stderr) => {
        if (!err) return resolve(out);
        const msg = (stderr || err.message).trim();
        if (step.tolerate?.test(msg)) return resolve('');
        reject(new LxrError('LXR_HOST_SETUP_FAILED', `network: ${formatStep(step)}: ${msg}`, { step: 'network' }));
      });
    });
  }
}

export class FakeNetRunner implements NetRunner {
  readonly steps: NetStep[] = [];
  /** Fail the step whose formatted text matches, once. */
  failOn: RegExp | null = null;
  /** What a step whose formatted text matches prints. */
  outputs: Array<[RegExp, string]> = [];

  async run(step: NetStep): Promise<string> {
    this.steps.push(step);
    const text = formatStep(step);
    if (this.failOn?.test(text)) {
      this.failOn = null;
      throw new LxrError('LXR_HOST_SETUP_FAILED', `network: ${text}: injected failure`);
    }
    return this.outputs.find(([re]) => re.test(text))?.[1] ?? '';
  }

  /** The recorded steps as text. */
  text(): string[] {
    return this.steps.map(formatStep);
  }
}
