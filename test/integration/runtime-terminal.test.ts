// process.terminal: the runtime allocates a PTY in the container's own
// devpts and hands its master to a console socket (SCM_RIGHTS, as runc).
// Node cannot receive descriptors over a unix socket, so a short Python
// listener receives the master and prints what the container wrote to it.

import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { runtimeFixture } from '../helpers/runtime.js';
import { baseConfig } from '../helpers/runc-spec.js';
import { tempDir, uniqueId } from '../helpers/tmp.js';
import { assertNothingLeft, execProcess, rejectsWith, sh, startContainer, T } from './runtime-common.js';

const fx = await runtimeFixture();

const LISTENER = `
import os, socket, sys
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(1)
print("listening", flush=True)
conn, _ = srv.accept()
msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
print("name=" + msg.decode(), flush=True)
print("fds=%d" % len(fds), flush=True)
out = b""
while True:
    try:
        d = os.read(fds[0], 4096)
    except OSError:  # EIO: every slave descriptor is closed
        break
    if not d:
        break
    out += d
print("output=" + out.decode(errors="replace").replace("\\r", "").replace("\\n", "|"), flush=True)
`;

interface Console {
  path: string;
  /** Everything the listener printed, once it is done. */
  done: Promise<string>;
  child: ChildProcess;
}

async function consoleSocket(): Promise<Console> {
  const sock = path.join(await tempDir('console'), 'console.sock');
  const child = spawn('python3', ['-c', LISTENER, sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const listening = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening\n')) resolve();
    });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`console listener exited (${code}) before listening: ${out}`)));
  });
  const done = new Promise<string>((resolve) => child.on('close', () => resolve(out)));
  await listening;
  return { path: sock, done, child };
}

function stop(c: Console): void {
  if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
}

describe('terminal', () => {
  test('the container\'s stdio is a pty of its own devpts; the master reaches the console socket', T, async () => {
    const con = await consoleSocket();
    try {
      const cfg = baseConfig({ args: ['sh', '-c', 'tty; stty size; echo hi'], terminal: true });
      cfg.process!.consoleSize = { height: 24, width: 100 };
      const id = uniqueId('c');
      await fx.rt.create(id, await fx.bundle(cfg), { consoleSocket: con.path });
      await fx.rt.start(id);
      assert.equal((await fx.rt.wait(id)).exitCode, 0);
      await fx.rt.delete(id);
      const out = await con.done;
      assert.match(out, /^name=\/dev\/pts\/0$/m);
      assert.match(out, /^fds=1$/m);
      assert.match(out, /^output=\/dev\/pts\/0\|24 100\|hi\|$/m);
    } finally {
      stop(con);
    }
  });

  test('exec with a terminal gets its own pty in the container', T, async () => {
    const c = await startContainer(fx, sh('sleep 60'));
    const con = await consoleSocket();
    try {
      const h = await fx.rt.exec(c.id, execProcess(['sh', '-c', 'tty; id -u'], { terminal: true }), { consoleSocket: con.path });
      assert.equal(await h.exited, 0);
      const out = await con.done;
      assert.match(out, /^output=\/dev\/pts\/\d+\|0\|$/m);
    } finally {
      stop(con);
      await fx.rt.delete(c.id, { force: true });
    }
  });

  test('a console socket nobody listens on fails create and leaves nothing', T, async () => {
    const id = uniqueId('c');
    const sock = path.join(await tempDir('console'), 'nobody.sock');
    const e = await rejectsWith(
      fx.rt.create(id, await fx.bundle(baseConfig({ args: ['true'], terminal: true })), { consoleSocket: sock }),
      'LXR_NOT_FOUND',
      /console/,
      new RegExp(sock),
    );
    assert.equal(e.errno, 'ENOENT');
    await assertNothingLeft(fx, id);
  });
});
