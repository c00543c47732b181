// lxr-agent's /metrics end to end: a real agent serving metrics on a
// loopback port, a real container made through the gRPC API from an image in
// a loopback registry, and a scrape checked for cAdvisor's per-container
// names, the agent's own metrics and the Prometheus text format.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { startAgent, type Agent } from '../../agent/server.js';
import { ContainersClient, unary } from '../../proto/shared/api.js';
import { rootLogger } from '../../proto/shared/log.js';
import { removeCgroupTree } from '../helpers/cgroups.js';
import type { TestRegistry } from '../helpers/registry.js';
import { agentTestSkip, busyboxRegistry, cleanupSteps } from '../helpers/agent.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const skip = agentTestSkip;



interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

// The Prometheus text exposition format (0.0.4): comments, blank lines, and
// samples `name{label="value",...} value [timestamp]`.
const METRIC_NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const VALUE = '(?:[-+]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][-+]?\\d+)?|[-+]?Inf|NaN)';
const SAMPLE_RE = new RegExp(`^(${METRIC_NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*,?)?\\})? (${VALUE})(?: -?\\d+)?$`);
const COMMENT_RE = new RegExp(`^# (?:HELP ${METRIC_NAME} .*|TYPE ${METRIC_NAME} (?:counter|gauge|histogram|summary|untyped)|.*)$`);

/** Every sample of a scrape; fails on any line that is not the text format. */
function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      assert.match(line, COMMENT_RE);
      continue;
    }
    const m = SAMPLE_RE.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_all, c: string) => (c === 'n' ? '\n' : c));
    }
    out.push({ name: m[1]!, labels, value: Number(m[3]!.replace(/^\+?Inf$/, 'Infinity').replace(/^-Inf$/, '-Infinity')) });
  }
  return out;
}

describe('agent /metrics', { skip, timeout: 180_000 }, () => {
  let work: string;
  let reg: TestRegistry;
  let agent: Agent;
  let cgroupParent: string;
  let ctrs: ContainersClient;
  let image: string;
  const made = new Set<string>();

  before(async () => {
    work = await ownedTempDir('agentmetrics');
    cgroupParent = uniqueId('lxr-test-');
    ({ reg, image } = await busyboxRegistry(work));
    agent = await startAgent({
      root: path.join(work, 'root'),
      socket: path.join(work, 'run', 'agent.sock'),
      cgroupParent,
      metricsListen: '127.0.0.1:0',
      log: rootLogger('lxr-agent-test', process.env.LXR_LOG_LEVEL ?? 'warn'),
    });
    ctrs = new ContainersClient(agent.address, grpc.credentials.createInsecure());
  });

  after(async () => {
    const { step, done } = cleanupSteps();
    for (const name of made) {
      await step(() =>
        unary(ctrs, ctrs.Remove, { name, force: true }).catch((e: grpc.ServiceError) => {
          if (e.code !== grpc.status.NOT_FOUND) throw e;
        }),
      );
    }
    await step(() => ctrs?.close());
    await step(() => agent?.close());
    await step(() => reg?.stop());
    await step(async () => {
      if (!cgroupParent) return;
      const { killed } = await removeCgroupTree(cgroupParent);
      if (killed.length > 0) throw new Error(`processes left in ${cgroupParent}: ${killed.join(' ')}`);
    });
    await step(() => work && rm(work, { recursive: true, force: true }));
    done('agent-metrics');
  });

  const scrape = async (p = '/metrics'): Promise<Response> => fetch(`http://${agent.metricsAddress}${p}`);

  test('serves only /metrics, on the bound address', async () => {
    assert.match(agent.metricsAddress ?? '', /^127\.0\.0\.1:[1-9]\d*$/);
    const other = await scrape('/');
    assert.equal(other.status, 404);
    await other.body?.cancel();
    const res = await scrape();
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const samples = parseExposition(await res.text());
    assert.deepEqual(samples.filter((s) => s.name === 'lxr_agent_info').map((s) => [s.labels, s.value]), [[{ version: '0.1.0' }, 1]]);
    for (const state of ['created', 'running', 'stopped']) {
      assert.equal(samples.find((s) => s.name === 'lxr_agent_containers' && s.labels.state === state)?.value, 0, state);
    }
    // prom-client's process metrics, under the agent's prefix.
    assert.ok(samples.some((s) => s.name === 'lxr_agent_process_cpu_seconds_total'));
    assert.ok(samples.some((s) => s.name === 'lxr_agent_nodejs_heap_size_used_bytes'));
    assert.ok(!samples.some((s) => s.name.startsWith('container_')), 'no containers yet');
  });

  test('a running container has cAdvisor-named metrics', async () => {
    const limited = uniqueId('m');
    const unlimited = uniqueId('m');
    const memoryBytes = 64 * 1024 * 1024;
    for (const [name, limits] of [
      [limited, { memoryBytes }],
      [unlimited, undefined],
    ] as const) {
      made.add(name);
      await unary(ctrs, ctrs.Create, { name, image, command: ['sleep', '30'], ...(limits ? { limits } : {}) });
      await unary(ctrs, ctrs.Start, { name });
    }

    const res = await scrape();
    assert.equal(res.status, 200);
    const text = await res.text();
    const samples = parseExposition(text);
    const one = (metric: string, name: string): Sample => {
      const found = samples.filter((s) => s.name === metric && s.labels.name === name);
      assert.equal(found.length, 1, `${metric}{name="${name}"} in\n${text}`);
      const s = found[0]!;
      assert.deepEqual(s.labels, { name, id: name, image }, metric);
      return s;
    };
    const started = Date.now() / 1000;
    for (const name of [limited, unlimited]) {
      assert.ok(one('container_cpu_usage_seconds_total', name).value >= 0);
      assert.ok(one('container_memory_usage_bytes', name).value > 0);
      assert.ok(one('container_memory_working_set_bytes', name).value > 0);
      assert.ok(one('container_processes', name).value >= 1);
      assert.equal(one('container_oom_events_total', name).value, 0);
      const t = one('container_start_time_seconds', name).value;
      assert.ok(t > started - 300 && t <= started + 1, String(t));
    }
    assert.equal(one('container_spec_memory_limit_bytes', limited).value, memoryBytes);
    assert.equal(one('container_spec_memory_limit_bytes', unlimited).value, 0);
    assert.match(text, /^# TYPE container_cpu_usage_seconds_total counter$/m);
    assert.match(text, /^# TYPE container_memory_working_set_bytes gauge$/m);
    assert.ok((samples.find((s) => s.name === 'lxr_agent_containers' && s.labels.state === 'running')?.value ?? 0) >= 2);

    // A removed container's series go away.
    await unary(ctrs, ctrs.Remove, { name: unlimited, force: true });
    made.delete(unlimited);
    const after = parseExposition(await (await scrape()).text());
    assert.ok(!after.some((s) => s.labels.name === unlimited));
    assert.ok(after.some((s) => s.name === 'container_processes' && s.labels.name === limited));
  });
});
