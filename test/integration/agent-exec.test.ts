// Exec sessions end to end: a real lxr-agent process (so its memory can be
// watched), a real grpc-js client, a busybox container. The exit-status
// table, stdout/stderr apart, stdin EOF, terminals (a device of the
// container's own, resizes seen by `stty size`), 1 GiB through stdout
// intact, a slow reader that holds the agent's memory flat, detach and
// re-attach from an offset, two clients at once, the exit after the end,
// gaps, the idle timeout, and bad requests.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { unary, type ExecStart, type PullResponse } from '../../proto/shared/api.js';
import { AgentProcesses, type AgentProc } from '../helpers/agent-process.js';
import { agentTestSkip, busyboxRegistry, cleanupSteps, collect, grpcErr } from '../helpers/agent.js';
import { removeCgroupTree } from '../helpers/cgroups.js';
import { ExecStream, growthWhilePaused } from '../helpers/exec-stream.js';
import type { TestRegistry } from '../helpers/registry.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const skip = agentTestSkip;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('agent exec sessions', { skip, timeout: 300_000 }, () => {
  let work: string;
  let reg: TestRegistry;
  let lab: AgentProcesses;
  let agent: AgentProc;
  let cgroupParent: string;
  const ctr = uniqueId('c');
  const stopped = uniqueId('c');
  const made = new Set<string>();

  const run = async (start: Omit<ExecStart, 'container'>, input?: string, close = false) => {
    const s = ExecStream.start(agent.exec, { container: ctr, ...start });
    if (input !== undefined) s.input(input);
    if (close) s.send({ closeStdin: true });
    return s.done;
  };

  before(async () => {
    work = await ownedTempDir('agentexec');
    cgroupParent = uniqueId('lxr-test-');
    let image: string;
    ({ reg, image } = await busyboxRegistry(work));
    // A small ring and short retention, so gaps and forgetting are quick to show.
    lab = new AgentProcesses({ work, cgroupParent, args: ['--exec-ring-bytes', String(1 << 20), '--exec-retention', '2'] });
    agent = await lab.spawn({ LXR_LOG_LEVEL: process.env.LXR_LOG_LEVEL ?? 'info' });
    assert.equal((await collect<PullResponse>(agent.images.Pull({ image }))).at(-1)?.event, 'image');
    for (const name of [ctr, stopped]) {
      made.add(name);
      await unary(agent.ctrs, agent.ctrs.Create, { name, image, command: ['sleep', '3600'] });
    }
    await unary(agent.ctrs, agent.ctrs.Start, { name: ctr });
  });

  after(async () => {
    const { step, done } = cleanupSteps();
    const live = lab?.live();
    for (const name of made) if (live) await step(() => unary(live.ctrs, live.ctrs.Remove, { name, force: true }));
    await step(() => lab?.killAll());
    await step(() => reg?.stop());
    await step(async () => {
      const { killed } = await removeCgroupTree(cgroupParent);
      if (killed.length > 0) throw new Error(`processes left in ${cgroupParent}: ${killed.join(' ')}`);
    });
    await step(() => work && rm(work, { recursive: true, force: true }));
    done(`agent-exec (agent logs in ${work})`);
  });

  test('exit status table: code, 126 not executable, 127 not found, 128+n for signal n', async () => {
    const cases: Array<[string[], number, number, RegExp?]> = [
      [['true'], 0, 0],
      [['sh', '-c', 'exit 3'], 3, 0],
      [['sh', '-c', 'exit 255'], 255, 0],
      [['sh', '-c', 'kill -TERM $$'], 143, 15],
      [['sh', '-c', 'kill -KILL $$'], 137, 9],
      [['sh', '-c', 'kill -INT $$'], 130, 2],
      [['/no/such/binary'], 127, 0, /not found/],
      [['nosuchcommand'], 127, 0, /not found/],
      [['/etc/passwd'], 126, 0, /permission denied|not executable/i],
    ];
    for (const [args, code, signal, stderr] of cases) {
      for (const tty of [false, true]) {
        const r = await run({ args, tty });
        assert.deepEqual(r.exit, { code, signal }, `${args.join(' ')} tty=${tty}: ${r.stderr}`);
        if (stderr) assert.match(r.stderr.toString(), stderr, args.join(' '));
      }
    }
  });

  test('stdout and stderr arrive apart; env, cwd and user apply; the process is in the container', async () => {
    const r = await run({ args: ['sh', '-c', 'echo out; echo err >&2; echo $FOO; pwd; id -u; cut -d" " -f4 /proc/$$/stat'], env: ['FOO=bar'], cwd: '/etc', user: '1234' });
    assert.deepEqual(r.exit, { code: 0, signal: 0 }, r.stderr.toString());
    const [out, foo, cwd, uid, ppid] = r.stdout.toString().split('\n');
    assert.deepEqual([out, foo, cwd, uid], ['out', 'bar', '/etc', '1234']);
    // Its parent (the helper) is outside the container's pid namespace.
    assert.equal(ppid, '0');
    assert.equal(r.stderr.toString(), 'err\n');
  });

  test('the exec gets the container init\'s capabilities, no_new_privs, seccomp, and no extra descriptors', async () => {
    const show = 'grep -E "^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):"';
    const r = await run({ args: ['sh', '-c', `${show} /proc/self/status; echo --; ${show} /proc/1/status; echo --; ls /proc/self/fd`] });
    const [self, init, fds] = r.stdout.toString().split('--\n');
    assert.equal(self, init);
    assert.match(self!, /Seccomp:\s+2/);
    // ls itself opens one directory (3); nothing else is inherited.
    assert.deepEqual(fds!.trim().split(/\s+/), ['0', '1', '2', '3']);
  });

  test('stdin: input reaches the process, close_stdin is EOF', async () => {
    const r = await run({ args: ['sh', '-c', 'cat; echo done'] }, 'hello\nworld\n', true);
    assert.equal(r.stdout.toString(), 'hello\nworld\ndone\n');
    assert.deepEqual(r.exit, { code: 0, signal: 0 });
    const big = Buffer.alloc(3 << 20, 7);
    const s = ExecStream.start(agent.exec, { container: ctr, args: ['wc', '-c'] });
    for (let i = 0; i < big.length; i += 65536) s.input(big.subarray(i, i + 65536));
    s.send({ closeStdin: true });
    assert.equal((await s.done).stdout.toString().trim(), String(big.length));
  });

  test('tty: a terminal device of the container\'s own; resizes reach stty size; ^D ends input', async () => {
    const s = ExecStream.start(agent.exec, { container: ctr, args: ['sh', '-c', 't=$(tty); echo "$t"; test -c "$t" && echo is-a-device; stty size; read x; stty size; cat'], tty: true, rows: 30, cols: 100 });
    await s.waitStdout((o) => /30 100\r\n/.test(o));
    s.send({ resize: { rows: 50, cols: 132 } });
    await sleep(100);
    s.input('go\r');
    await s.waitStdout((o) => /50 132\r\n/.test(o));
    s.input('typed\r');
    s.send({ closeStdin: true });
    const r = await s.done;
    const out = r.stdout.toString();
    assert.match(out, /^\/dev\/pts\/\d+\r\nis-a-device\r\n30 100\r\n/);
    assert.match(out, /typed\r\n/);
    assert.deepEqual(r.exit, { code: 0, signal: 0 }, out);
    assert.equal(r.stderr.length, 0);
  });

  test('signals from the client reach the process', async () => {
    const s = ExecStream.start(agent.exec, { container: ctr, args: ['sh', '-c', 'trap "echo got-usr1; exit 4" USR1; echo ready; while :; do sleep 0.1; done'] });
    await s.waitStdout((o) => o.includes('ready'));
    s.send({ signal: 'SIGUSR1' });
    const r = await s.done;
    assert.match(r.stdout.toString(), /got-usr1/);
    assert.deepEqual(r.exit, { code: 4, signal: 0 });
    const k = ExecStream.start(agent.exec, { container: ctr, args: ['sleep', '100'] });
    await k.session;
    k.send({ signal: 'KILL' });
    assert.deepEqual((await k.done).exit, { code: 137, signal: 9 });
  });

  test('many execs at once: each gets its own output, input and status', async () => {
    const n = 12;
    const runs = Array.from({ length: n }, (_, i) => {
      const s = ExecStream.start(agent.exec, { container: ctr, args: ['sh', '-c', `read x; echo "$x-${i}"; echo e${i} >&2; exit ${i}`] });
      s.input(`in${i}\n`);
      return s.done;
    });
    const results = await Promise.all(runs);
    results.forEach((r, i) => {
      assert.equal(r.stdout.toString(), `in${i}-${i}\n`);
      assert.equal(r.stderr.toString(), `e${i}\n`);
      assert.deepEqual(r.exit, { code: i, signal: 0 });
    });
  });

  test('1 GiB through stdout arrives intact and in order', async () => {
    // A 16 MiB random file in the container, then 64 copies of it.
    const mk = await run({ args: ['sh', '-c', 'head -c 16777216 /dev/urandom > /tmp/r && cat /tmp/r'] });
    assert.equal(mk.stdout.length, 16 << 20, mk.stderr.toString());
    const block = createHash('sha256').update(mk.stdout).digest('hex');
    const s = ExecStream.start(agent.exec, { container: ctr, args: ['sh', '-c', 'i=0; while [ $i -lt 64 ]; do cat /tmp/r; i=$((i+1)); done'] });
    let hash = createHash('sha256');
    let inBlock = 0;
    let total = 0;
    const blocks: string[] = [];
    s.onOutput = (stream, data) => {
      assert.equal(stream, 'stdout');
      total += data.length;
      for (let off = 0; off < data.length; ) {
        const take = Math.min(data.length - off, (16 << 20) - inBlock);
        hash.update(data.subarray(off, off + take));
        inBlock += take;
        off += take;
        if (inBlock === 16 << 20) {
          blocks.push(hash.digest('hex'));
          hash = createHash('sha256');
          inBlock = 0;
        }
      }
    };
    const r = await s.done;
    assert.deepEqual(r.exit, { code: 0, signal: 0 }, r.stderr.toString());
    assert.equal(total, 1 << 30);
    assert.equal(r.endOffset, 1 << 30);
    assert.equal(blocks.length, 64);
    assert.ok(blocks.every((b) => b === block), 'a block differs from the file');
    await run({ args: ['rm', '/tmp/r'] });
  });

  test('a slow reader: the agent\'s memory stays flat and the process waits; nothing is lost', async () => {
    const size = 512 << 20;
    const s = ExecStream.start(agent.exec, { container: ctr, args: ['head', '-c', String(size), '/dev/zero'] });
    let got = 0;
    s.onOutput = (_stream, data) => {
      got += data.length;
    };
    const id = await s.session;
    const grown = await growthWhilePaused(s, agent.pid);
    const sessions = (await unary(agent.exec, agent.exec.ListSessions, { container: ctr })).sessions;
    const mine = sessions.find((x) => x.id === id);
    assert.equal(mine?.state, 'running', 'the process finished: its output went somewhere while nobody read');
    assert.ok(grown < 64 << 20, `agent RSS grew by ${(grown / 1048576).toFixed(1)} MiB while the reader was paused`);
    s.call.resume();
    const r = await s.done;
    assert.equal(got, size);
    assert.deepEqual(r.exit, { code: 0, signal: 0 });
  });

  test('detach and re-attach from an offset; two clients at once; the exit after the end', async () => {
    const c1 = ExecStream.start(agent.exec, { container: ctr, args: ['sh', '-c', 'read l; echo one-$l; read m; echo two-$m; exit 5'] });
    const id = await c1.session;
    c1.input('x\n');
    await c1.waitStdout((o) => o === 'one-x\n');
    c1.detach();
    await sleep(200);
    let info = (await unary(agent.exec, agent.exec.ListSessions, { container: ctr })).sessions.find((x) => x.id === id);
    assert.equal(info?.state, 'running');
    assert.equal(info?.attachedClients, 0);

    const c2 = ExecStream.attach(agent.exec, id, 0);
    const c3 = ExecStream.attach(agent.exec, id, 4);
    await c2.waitStdout((o) => o === 'one-x\n');
    await c3.waitStdout((o) => o === 'x\n');
    info = (await unary(agent.exec, agent.exec.ListSessions, {})).sessions.find((x) => x.id === id);
    assert.equal(info?.attachedClients, 2);
    c2.input('y\n');
    const [r2, r3] = await Promise.all([c2.done, c3.done]);
    assert.equal(r2.stdout.toString(), 'one-x\ntwo-y\n');
    assert.equal(r3.stdout.toString(), 'x\ntwo-y\n');
    assert.equal(r3.firstOffset, 4);
    for (const r of [r2, r3]) assert.deepEqual(r.exit, { code: 5, signal: 0 });

    // After the end: the whole output and the status, for whoever comes.
    const c4 = await ExecStream.attach(agent.exec, id, 0).done;
    assert.equal(c4.stdout.toString(), 'one-x\ntwo-y\n');
    assert.deepEqual(c4.exit, { code: 5, signal: 0 });
    info = (await unary(agent.exec, agent.exec.ListSessions, { container: ctr })).sessions.find((x) => x.id === id);
    assert.equal(info?.state, 'exited');
    assert.deepEqual(info?.exit, { code: 5, signal: 0 });
    // Retention (2 s here): then the session is forgotten.
    await sleep(2500);
    await assert.rejects(ExecStream.attach(agent.exec, id, 0).done, grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND', { message: /exec session/ }));
  });

  test('output nobody read beyond the ring is reported as a gap', async () => {
    const c1 = ExecStream.start(agent.exec, { container: ctr, args: ['sh', '-c', 'head -c 3145728 /dev/zero; echo end'] });
    const id = await c1.session;
    c1.detach();
    for (let i = 0; i < 100; i++) {
      const s = (await unary(agent.exec, agent.exec.ListSessions, {})).sessions.find((x) => x.id === id);
      if (s?.state === 'exited') break;
      await sleep(50);
    }
    let got = 0;
    const c2 = ExecStream.attach(agent.exec, id, 0);
    c2.onOutput = (_s, d) => (got += d.length);
    const r = await c2.done;
    assert.equal(r.gaps.length, 1);
    const total = 3145728 + 4;
    // The ring (1 MiB here) keeps whole reads: at most one read less than its size.
    assert.ok(r.gaps[0]! >= total - (1 << 20) && r.gaps[0]! <= total - (1 << 20) + 65536, `gap until ${r.gaps[0]}`);
    assert.equal(got, total - r.gaps[0]!);
    assert.equal(r.endOffset, total);
    assert.deepEqual(r.exit, { code: 0, signal: 0 });
  });

  test('idle timeout: a session nobody is attached to is ended (SIGHUP); an attached one is not', async () => {
    const idle = ExecStream.start(agent.exec, { container: ctr, args: ['sleep', '100'], idleTimeoutSeconds: 1 });
    const idleId = await idle.session;
    idle.detach();
    const kept = ExecStream.start(agent.exec, { container: ctr, args: ['sh', '-c', 'read x; echo still-here'], idleTimeoutSeconds: 1 });
    await kept.session;
    await sleep(2500);
    const s = (await unary(agent.exec, agent.exec.ListSessions, {})).sessions.find((x) => x.id === idleId);
    assert.equal(s?.state, 'exited');
    assert.deepEqual(s?.exit, { code: 129, signal: 1 });
    kept.input('\n');
    const r = await kept.done;
    assert.equal(r.stdout.toString(), 'still-here\n');
  });

  test('bad requests are refused naming the field; a bad request loses no session', async () => {
    const refused = (first: object, rpc: 'Exec' | 'Attach' = 'Exec') => new ExecStream(agent.exec, first, rpc).done;
    await assert.rejects(refused({ stdin: Buffer.from('x') }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'start', message: /first message must be start/ }));
    await assert.rejects(refused({ start: { container: ctr, args: [] } }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'start.args' }));
    await assert.rejects(refused({ start: { args: ['true'] } }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'start.container' }));
    await assert.rejects(refused({ start: { container: 'no-such-ctr', args: ['true'] } }), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND', { message: /no-such-ctr/ }));
    await assert.rejects(refused({ start: { container: 'Bad Name!', args: ['true'] } }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'name' }));
    await assert.rejects(refused({ start: { container: stopped, args: ['true'] } }), grpcErr(grpc.status.FAILED_PRECONDITION, 'LXR_ILLEGAL_STATE', { message: /created/ }));
    await assert.rejects(refused({ start: { container: ctr, args: ['true'], env: ['NOEQUALS'] } }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'start.env[0]' }));
    await assert.rejects(refused({ start: { container: ctr, args: ['true'], cwd: 'relative' } }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'start.cwd' }));
    await assert.rejects(refused({ start: { container: ctr, args: ['true'], user: 'nobody-here' } }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'start.user', message: /nobody-here/ }));
    await assert.rejects(refused({ attach: { sessionId: 'nope' } }, 'Attach'), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND', { message: /nope/ }));
    await assert.rejects(refused({ start: { container: ctr, args: ['true'] } }, 'Attach'), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'attach' }));

    // A bad message mid-stream fails that client only; the session lives on.
    const s = ExecStream.start(agent.exec, { container: ctr, args: ['sh', '-c', 'read x; echo got-$x'] });
    const id = await s.session;
    s.send({ signal: 'SIGNOPE' });
    await assert.rejects(s.done, grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'signal', message: /SIGNOPE/ }));
    const again = ExecStream.attach(agent.exec, id, 0);
    again.input('ok\n');
    const r = await again.done;
    assert.equal(r.stdout.toString(), 'got-ok\n');
    assert.deepEqual(r.exit, { code: 0, signal: 0 });
  });
});
