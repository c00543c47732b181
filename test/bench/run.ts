// Benchmark entry point: `npm run bench -- NAME [--json] [--count N] [--only PARTS]`.
// Benchmarks measure LXR against its peers side by side in one run and
// report ratios; they never fail on timing (only on errors).

import { AGENT_PARTS, agentBench, formatAgentReport, type AgentPart } from './agent.js';
import { cliBench, formatCliReport } from './cli.js';
import { allocBench, formatAllocReport } from './alloc.js';
import { formatNetReport, netBench } from './net.js';
import { formatImageReport, imageBench } from './image.js';
import { formatRuntimeReport, runtimeBench } from './runtime.js';
import { formatIdeReport, ideBench } from './ide.js';

interface Bench {
  describe: string;
  /** What --count counts, and its default. */
  count: { what: string; default: number };
  /** The parts --only can choose (all run without it); none: --only is refused. */
  parts?: readonly string[];
  run(o: { count: number; json: boolean; only: string[] | null }): Promise<void>;
}

const BENCHES: Record<string, Bench> = {
  runtime: {
    describe: '100 sequential `true` containers: LXR in process, the lxr-runtime command, runc, crun (root)',
    count: { what: 'containers per contender', default: 100 },
    async run({ count, json }) {
      const log = (l: string) => process.stderr.write(l + '\n');
      const r = await runtimeBench({ count, log });
      if (json) {
        const { notes, ...rest } = r;
        process.stdout.write(JSON.stringify(notes.length ? r : rest, null, 2) + '\n');
      } else {
        process.stdout.write(formatRuntimeReport(r) + '\n');
      }
    },
  },
  agent: {
    describe: 'exec latency vs runc exec and podman exec; 1 GiB exec throughput vs an nsenter pipe; create-and-start vs podman run (root)',
    count: { what: 'samples per contender (latency, create-and-start)', default: 30 },
    parts: AGENT_PARTS,
    async run({ count, json, only }) {
      const log = (l: string) => process.stderr.write(l + '\n');
      const r = await agentBench({ count, log, ...(only ? { only: only as AgentPart[] } : {}) });
      process.stdout.write((json ? JSON.stringify(r, null, 2) : formatAgentReport(r)) + '\n');
    },
  },
  cli: {
    describe: 'lxrctl ps wall time against a local controller vs podman ps -a, with node\'s own start beside them (root)',
    count: { what: 'rounds, contenders alternating', default: 30 },
    async run({ count, json }) {
      const log = (l: string) => process.stderr.write(l + '\n');
      const r = await cliBench({ count, log });
      process.stdout.write((json ? JSON.stringify(r, null, 2) : formatCliReport(r)) + '\n');
    },
  },
  alloc: {
    describe: 'the O(1) allocator: allocate/release churn in a /24 and a /8, cost per operation and their ratio; durable cost',
    count: { what: 'operations per range', default: 1_000_000 },
    async run({ count, json }) {
      const log = (l: string) => process.stderr.write(l + '\n');
      const r = await allocBench({ ops: count, log });
      process.stdout.write((json ? JSON.stringify(r, null, 2) : formatAllocReport(r)) + '\n');
    },
  },
  net: {
    describe: 'network setup per container: LXR attach vs the CNI bridge plugin with host-local IPAM, in lab namespaces (root)',
    count: { what: 'containers per contender', default: 50 },
    async run({ count, json }) {
      const log = (l: string) => process.stderr.write(l + '\n');
      const r = await netBench({ count, log });
      process.stdout.write((json ? JSON.stringify(r, null, 2) : formatNetReport(r)) + '\n');
    },
  },
  ide: {
    describe: 'lxrctl create --ide code-server to the VS Code workbench in Chromium, cold (tools installed from npm) and warm, vs podman running the same (root)',
    count: { what: 'warm samples per contender', default: 3 },
    async run({ count, json }) {
      const log = (l: string) => process.stderr.write(l + '\n');
      const r = await ideBench({ count, log });
      process.stdout.write((json ? JSON.stringify(r, null, 2) : formatIdeReport(r)) + '\n');
    },
  },
  image: {
    describe: 'pull + unpack a 5-layer, ~300 MB, ~14k-file image from a loopback registry: LXR vs skopeo copy + umoci unpack (root)',
    count: { what: 'rounds, contenders alternating', default: 3 },
    async run({ count, json }) {
      const log = (l: string) => process.stderr.write(l + '\n');
      const r = await imageBench({ rounds: count, log });
      if (json) {
        const { notes, ...rest } = r;
        process.stdout.write(JSON.stringify(notes.length ? r : rest, null, 2) + '\n');
      } else {
        process.stdout.write(formatImageReport(r) + '\n');
      }
    },
  },
};

const USAGE = `usage: npm run bench -- NAME [--json] [--count N] [--only PARTS]
benchmarks:
${Object.entries(BENCHES)
  .map(([n, b]) => `  ${n.padEnd(10)} ${b.describe}`)
  .join('\n')}
options:
  --json       print only a JSON summary (medians etc.) on stdout; progress goes to stderr
  --count N    ${Object.entries(BENCHES)
    .map(([n, b]) => `${n}: ${b.count.what} (default ${b.count.default})`)
    .join('; ')}
  --only PARTS comma-separated parts to run, the others skipped: ${Object.entries(BENCHES)
    .filter(([, b]) => b.parts)
    .map(([n, b]) => `${n}: ${b.parts!.join(', ')}`)
    .join('; ')}`;

function fail(msg: string, code = 2): never {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(code);
}

async function main(argv: string[]): Promise<void> {
  let json = false;
  let count: number | undefined;
  let only: string[] | null = null;
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') json = true;
    else if (a === '--count' || a.startsWith('--count=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v === undefined || !/^\d+$/.test(v) || Number(v) < 1) fail(`--count needs a positive integer, got ${v ?? 'nothing'}`);
      count = Number(v);
    } else if (a === '--only' || a.startsWith('--only=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v === undefined || v === '') fail('--only needs a comma-separated list of parts');
      only = v.split(',');
    } else if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE + '\n');
      return;
    } else if (a.startsWith('-')) fail(`unknown option ${a}\n${USAGE}`);
    else names.push(a);
  }
  if (names.length !== 1) fail(`name one benchmark (available: ${Object.keys(BENCHES).join(', ')})\n${USAGE}`);
  const bench = BENCHES[names[0]!];
  if (!bench) fail(`unknown benchmark "${names[0]}" (available: ${Object.keys(BENCHES).join(', ')})`);
  if (only) {
    if (!bench.parts) fail(`--only: ${names[0]} has no parts to choose from`);
    const unknown = only.filter((p) => !bench.parts!.includes(p));
    if (unknown.length) fail(`--only: ${names[0]} has no part ${unknown.map((p) => JSON.stringify(p)).join(', ')} (parts: ${bench.parts.join(', ')})`);
  }
  if (process.getuid?.() !== 0) fail(`${names[0]} needs root: run it as root`, 1);
  await bench.run({ count: count ?? bench.count.default, json, only });
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
