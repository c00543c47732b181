// Metrics as issue 6 asks to show them: `promtool check metrics` passes on
// the controller's /metrics and on every agent's, and a real Prometheus
// (Debian's) started with the shipped config (deploy/prometheus) against a
// two-host lab finds the agents through the controller's service discovery
// and has data for every query of the shipped Grafana dashboard
// (deploy/grafana). Prometheus runs in the lab's own network namespace and
// is queried from there; the test changes only the controller address in
// the config (the marked lines) and the intervals (1 s instead of 15 s).
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { labDown, labUp, type LabState } from '../../cli/lab/lab.js';
import { CLIENT_OPTIONS, repoRoot, unary, WorkspacesClient } from '../../proto/shared/api.js';
import { agentTestSkip, importBusyboxOn } from '../helpers/agent.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const run = promisify(execFile);
const PROMETHEUS = '/usr/bin/prometheus';
const PROMTOOL = '/usr/bin/promtool';
const PROM_PORT = 9090;
const image = 'lab.example/lxr/busybox:v1';
const skip = agentTestSkip || (!existsSync(PROMETHEUS) || !existsSync(PROMTOOL) ? 'prometheus and promtool are not installed (scripts/install.sh installs them)' : false);

/** Runs a small Node program inside the lab's network namespace; its stdout. */
async function inLab(lab: LabState, program: string, ...args: string[]): Promise<string> {
  const r = await run('nsenter', ['-t', String(lab.switch.pid), '-n', process.execPath, '--input-type=module', '-e', program, '--', ...args], { timeout: 120_000, maxBuffer: 64 << 20 });
  return r.stdout;
}

const FETCH = `const r = await fetch(process.argv[1]); if (!r.ok) { console.error(r.status); process.exit(1); } process.stdout.write(await r.text());`;

/** Polls each query until it returns at least one sample; prints {expr: resultCount}. */
const POLL = `
const [base, ms, ...exprs] = process.argv.slice(1);
const out = {};
const deadline = Date.now() + Number(ms);
for (const e of exprs) {
  out[e] = 0;
  for (;;) {
    const r = await fetch(base + '/api/v1/query?query=' + encodeURIComponent(e)).then((x) => x.json()).catch((err) => ({ status: 'error', error: String(err) }));
    if (r.status === 'success' && r.data.result.length > 0) { out[e] = r.data.result.length; break; }
    if (r.status === 'error' && r.errorType === 'bad_data') { out[e] = 'bad query: ' + r.error; break; }
    if (Date.now() > deadline) break;
    await new Promise((res) => setTimeout(res, 500));
  }
}
process.stdout.write(JSON.stringify(out));
`;

describe('controller metrics with a real Prometheus and the shipped dashboard', { skip, timeout: 600_000 }, () => {
  let work: string;
  let dir: string;
  let lab: LabState;
  let prom: ChildProcess | null = null;
  let ws: WorkspacesClient;

  before(async () => {
    work = await ownedTempDir('prom');
    dir = path.join(work, 'lab');
    lab = await labUp({ name: uniqueId('m').toLowerCase().slice(0, 20), dir, hosts: 2, controller: true });
    ws = new WorkspacesClient(`unix://${lab.controller!.socket}`, grpc.credentials.createInsecure(), CLIENT_OPTIONS);
    await importBusyboxOn(work, lab.hosts.map((h) => h.socket), image);
  });

  after(async () => {
    if (prom?.pid && prom.exitCode === null) {
      prom.kill('SIGKILL');
      await new Promise((r) => prom!.once('exit', r));
    }
    ws?.close();
    if (dir) assert.deepEqual(await labDown(dir), []);
    if (work) await run('rm', ['-rf', work]);
  });

  test('promtool check metrics passes on the controller and every agent', async () => {
    const endpoints = [`http://${lab.controller!.metrics}/metrics`, ...lab.hosts.map((h) => `http://${h.address}:9100/metrics`)];
    for (const url of endpoints) {
      const body = await inLab(lab, FETCH, url);
      assert.match(body, /^# HELP /m, url);
      const check = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      check.stdout.on('data', (d: Buffer) => (out += d.toString()));
      check.stderr.on('data', (d: Buffer) => (out += d.toString()));
      check.stdin.end(body);
      const code = await new Promise<number | null>((r) => check.once('exit', r));
      assert.equal(code, 0, `promtool check metrics ${url}:\n${out}`);
    }
    const sd = JSON.parse(await inLab(lab, FETCH, `http://${lab.controller!.metrics}/sd/agents`)) as Array<{ targets: string[]; labels: Record<string, string> }>;
    assert.deepEqual(sd.map((t) => [t.labels.lxr_host, t.targets]), lab.hosts.map((h) => [h.name, [`${h.address}:9100`]]));
  });

  test('every query of the shipped dashboard returns data from Prometheus with the shipped config', async () => {
    const shipped = readFileSync(path.join(repoRoot(), 'deploy', 'prometheus', 'prometheus.yml'), 'utf8');
    assert.equal((shipped.match(/127\.0\.0\.1:9101.*# CONTROLLER/g) ?? []).length, 2, 'the two CONTROLLER lines');
    const config = shipped
      .replace(/127\.0\.0\.1:9101(.*# CONTROLLER)/g, `${lab.controller!.metrics}$1`)
      .replace(/(scrape_interval|evaluation_interval|refresh_interval): \d+s/g, '$1: 1s');
    const cfgFile = path.join(work, 'prometheus.yml');
    writeFileSync(cfgFile, config);
    const check = await run(PROMTOOL, ['check', 'config', cfgFile]);
    assert.match(check.stdout + check.stderr, /SUCCESS/);
    prom = spawn('nsenter', ['-t', String(lab.switch.pid), '-n', PROMETHEUS, `--config.file=${cfgFile}`, `--storage.tsdb.path=${path.join(work, 'tsdb')}`, `--web.listen-address=198.18.0.254:${PROM_PORT}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let promLog = '';
    prom.stderr!.on('data', (d: Buffer) => (promLog = (promLog + d.toString()).slice(-4000)));
    // Workspaces made while Prometheus scrapes, so create latency and calls have rates.
    for (const name of ['m1', 'm2', 'm3']) {
      await unary(ws, ws.Create, { spec: { name, image, command: ['sh', '-c', 'while :; do :; done'], cpus: 0.2 }, wait: true }, { deadline: Date.now() + 120_000 });
      await new Promise((r) => setTimeout(r, 1500));
    }
    const dashboard = JSON.parse(readFileSync(path.join(repoRoot(), 'deploy', 'grafana', 'lxr-cluster.json'), 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    assert.ok(exprs.length >= 15, `${exprs.length} queries`);
    const got = JSON.parse(await inLab(lab, POLL, `http://198.18.0.254:${PROM_PORT}`, '60000', ...exprs)) as Record<string, number | string>;
    const empty = Object.entries(got).filter(([, n]) => typeof n !== 'number' || n === 0);
    assert.deepEqual(empty, [], `queries without data (prometheus log tail:\n${promLog})`);
    // Per-workspace series come from the agents, labelled by workspace and host.
    const cpu = JSON.parse(await inLab(lab, FETCH, `http://198.18.0.254:${PROM_PORT}/api/v1/query?query=${encodeURIComponent('sum by (name, lxr_host) (container_memory_working_set_bytes{name=~"m[123]"})')}`)) as { data: { result: Array<{ metric: Record<string, string> }> } };
    assert.deepEqual(cpu.data.result.map((r) => r.metric.name).sort(), ['m1', 'm2', 'm3']);
    for (const name of ['m1', 'm2', 'm3']) await unary(ws, ws.Delete, { name });
  });
});
