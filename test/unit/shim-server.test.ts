// The native create server (`lxr-shim server`, native/shim/server.c) refuses
// what it cannot read before it forks anything: each bad request is answered
// on fd 3 with the request's tag and an error naming the problem, and the
// server goes on serving; and it holds gated creates until go or abort. No
// root needed: nothing here touches a mount or a cgroup (a create let on
// forks an init that refuses a plan without a mount namespace).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { findNativeBinary } from '../../agent/native-bin.js';

/** A plan record as the agent encodes it: name, field count, fields, each NUL-terminated. */
const record = (op: string, ...fields: string[]): string => [op, String(fields.length), ...fields].map((f) => f + '\0').join('');

/** The server's report lines (fd 3) as they come. */
function reportLines(server: ChildProcess): string[] {
  const lines: string[] = [];
  let text = '';
  (server.stdio[3] as Readable).setEncoding('utf8').on('data', (d: string) => {
    text += d;
    for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n')) {
      lines.push(text.slice(0, i));
      text = text.slice(i + 1);
    }
  });
  return lines;
}

test('the create server answers unreadable and malformed plans by tag, and goes on', async (t) => {
  const shim = findNativeBinary('lxr-shim', 'LXR_SHIM');
  if (!shim) return t.skip('native/build/lxr-shim is not built (make -C native)');
  const dir = mkdtempSync(path.join(tmpdir(), 'lxr-shim-server-'));
  const server = spawn(shim, ['server'], { stdio: ['pipe', 'ignore', 'ignore', 'pipe'] });
  try {
    // Seccomp records first (the server looks them up before it forks), then a record cut short.
    const cut = path.join(dir, 'cut');
    writeFileSync(cut, record('seccomp_default', '2147418112') + record('seccomp_arch', 'x86_64') + 'id\x001\x00abc');
    const badCount = path.join(dir, 'bad-count');
    writeFileSync(badCount, record('seccomp_default', '2147418112') + 'id\x00many\x00abc\x00');
    const lines = reportLines(server);
    server.stdin!.write(`create t1 ${path.join(dir, 'missing')}\ncreate t2 ${cut}\ncreate t3 ${badCount}\nnonsense\n`);
    const until = Date.now() + 10_000;
    while (lines.length < 4 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    const byTag = new Map(lines.map((l) => [l.slice(0, l.indexOf(' ')), JSON.parse(l.slice(l.indexOf(' ') + 1)) as { type: string; step: string; message: string }]));
    assert.deepEqual([...byTag.keys()].sort(), ['-', 't1', 't2', 't3'], lines.join('\n'));
    assert.equal(byTag.get('t1')!.type, 'error');
    assert.equal(byTag.get('t1')!.step, 'read plan');
    assert.match(byTag.get('t1')!.message, /open .*missing/);
    assert.equal(byTag.get('t2')!.step, 'read plan');
    assert.match(byTag.get('t2')!.message, /id: truncated record/);
    assert.match(byTag.get('t3')!.message, /id: many is not a number/);
    assert.match(byTag.get('-')!.message, /bad request/);
  } finally {
    server.stdin!.end();
    await new Promise((r) => (server.exitCode !== null ? r(null) : server.once('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a gated create waits for go: abort calls it off, go lets it on, a gate nobody holds is refused, and the server ending calls the rest off', async (t) => {
  const shim = findNativeBinary('lxr-shim', 'LXR_SHIM');
  if (!shim) return t.skip('native/build/lxr-shim is not built (make -C native)');
  const dir = mkdtempSync(path.join(tmpdir(), 'lxr-shim-gate-'));
  const server = spawn(shim, ['server'], { stdio: ['pipe', 'ignore', 'ignore', 'pipe'] });
  const lines = reportLines(server);
  const reportOf = async (tag: string): Promise<{ type: string; step: string; message: string }> => {
    const until = Date.now() + 10_000;
    for (;;) {
      const l = lines.find((x) => x.startsWith(`${tag} `));
      if (l) return JSON.parse(l.slice(tag.length + 1));
      if (Date.now() > until) throw new Error(`no report for ${tag}: ${lines.join('\n')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    // No new mount namespace: once let on, the init refuses before it touches any mount.
    const plan = path.join(dir, 'plan');
    writeFileSync(plan, record('id', 'g') + record('rootfs', dir) + record('gate') + record('args', 'true') + record('exit_file', path.join(dir, 'exit.json')));
    server.stdin!.write(`create g1 ${plan}\ncreate g2 ${plan}\ncreate g3 ${plan}\n`);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(lines, [], 'nothing happens before the gate opens');
    // More creates in flight than the gate table starts with: it grows.
    const many = Array.from({ length: 40 }, (_, i) => `m${i}`);
    server.stdin!.write(many.map((tag) => `create ${tag} ${plan}\n`).join(''));
    // A line longer than any request is refused as a whole, and the server goes on.
    server.stdin!.write(`create ${'x'.repeat(9000)}\n`);
    server.stdin!.write('abort g1\ngo g2\ngo nobody\n');
    server.stdin!.write(many.map((tag) => `abort ${tag}\n`).join(''));
    for (const tag of many) assert.equal((await reportOf(tag)).step, 'gate', `${tag} was held and called off`);
    assert.match((await reportOf('-')).message, /a request longer than \d+ bytes/);
    const g1 = await reportOf('g1');
    assert.equal(g1.step, 'gate');
    assert.match(g1.message, /called off/);
    const g2 = await reportOf('g2');
    assert.equal(g2.type, 'error');
    assert.equal(g2.step, 'make mounts private', 'let on: it went as far as the rootfs');
    assert.match((await reportOf('nobody')).message, /no create waits at that gate/);
    server.stdin!.end();
    const g3 = await reportOf('g3');
    assert.equal(g3.step, 'gate', 'the server ended: called off');
  } finally {
    server.stdin!.end();
    await new Promise((r) => (server.exitCode !== null ? r(null) : server.once('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  }
});
