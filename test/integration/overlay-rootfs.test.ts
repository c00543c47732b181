// The overlay rootfs: image layers as lower dirs plus a per-container upper
// dir, mounted by the runtime inside the container's own mount namespace.
// The container sees the merged tree (whiteouts hide lower files), its
// writes land in the upper dir and survive the container, and the host's
// mount table never shows the overlay.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { linuxOverlayFs, planOverlay, prepareOverlayDirs } from '../../agent/rootfs/overlay.js';
import { makeBusyboxRootfs } from '../helpers/rootfs.js';
import { baseConfig } from '../helpers/runc-spec.js';
import { parseCriLog, runtimeFixture } from '../helpers/runtime.js';
import { tempDir, uniqueId } from '../helpers/tmp.js';

const T = { timeout: 60_000 };

async function layers(dir: string): Promise<string[]> {
  const base = path.join(dir, 'layer0');
  await makeBusyboxRootfs(base);
  await writeFile(path.join(base, 'etc', 'motd'), 'from layer0\n');
  await writeFile(path.join(base, 'etc', 'doomed'), 'deleted by layer1\n');
  const top = path.join(dir, 'layer1');
  await mkdir(path.join(top, 'etc'), { recursive: true });
  await writeFile(path.join(top, 'etc', 'motd'), 'from layer1\n');
  // An overlay whiteout (0/0 character device) hides the lower file.
  execFileSync('mknod', [path.join(top, 'etc', 'doomed'), 'c', '0', '0']);
  return [base, top];
}

describe('overlay rootfs', () => {
  test('merged view, whiteouts, writes to the upper dir, nothing on the host', T, async () => {
    const fx = await runtimeFixture();
    const dir = await tempDir('ovl');
    const plan = planOverlay({ layers: await layers(dir), containerDir: path.join(dir, 'ctr') });
    await prepareOverlayDirs(plan, linuxOverlayFs);
    const cfg = baseConfig({ args: ['sh', '-c', 'cat /etc/motd; cat /etc/doomed 2>&1; echo written > /hello; awk \'$5 == "/" { for (i = 7; i <= NF; i++) if ($i == "-") print $(i + 1) }\' /proc/self/mountinfo'] });
    cfg.root = { path: plan.target, readonly: false };
    const bundle = await fx.bundle({ ...cfg, root: { path: 'rootfs' } });
    // The bundle's own rootfs copy is unused: point root.path at the overlay target.
    await writeFile(path.join(bundle, 'config.json'), JSON.stringify(cfg));
    const id = uniqueId('o');
    const log = path.join(dir, 'log');
    await fx.rt.create(id, bundle, { overlay: plan, stdio: { mode: 'log', path: log } });
    // Created and waiting: the overlay is mounted only in the container's mount namespace.
    const hostMounts = await readFile('/proc/self/mountinfo', 'utf8');
    assert.ok(!hostMounts.includes(plan.target), 'the overlay target appears in the host mount table');
    await fx.rt.start(id);
    const exit = await fx.rt.wait(id);
    await fx.rt.delete(id);
    const out = parseCriLog(await readFile(log, 'utf8'));
    assert.equal(exit.exitCode, 0, out.stderr);
    assert.equal(out.stdout, 'from layer1\ncat: can\'t open \'/etc/doomed\': No such file or directory\noverlay\n');
    // The write went to the upper dir, not to any layer, and survives the container.
    assert.equal(await readFile(path.join(plan.upper, 'hello'), 'utf8'), 'written\n');
    for (const l of plan.lower) assert.equal(existsSync(path.join(l, 'hello')), false);
    assert.deepEqual(await readdir(plan.target), [], 'the merged mount point is empty on the host');
  });

  test('a missing layer fails create with the step named and leaves nothing behind', T, async () => {
    const fx = await runtimeFixture();
    const dir = await tempDir('ovl');
    const [base] = await layers(dir);
    const plan = planOverlay({ layers: [base!, path.join(dir, 'no-such-layer')], containerDir: path.join(dir, 'ctr') });
    await prepareOverlayDirs(plan, linuxOverlayFs);
    const cfg = baseConfig({ args: ['true'] });
    cfg.root = { path: plan.target };
    const bundle = await fx.bundle({ ...cfg, root: { path: 'rootfs' } });
    await writeFile(path.join(bundle, 'config.json'), JSON.stringify(cfg));
    const id = uniqueId('o');
    await assert.rejects(fx.rt.create(id, bundle, { overlay: plan }), (e: unknown) => {
      assert.ok(e instanceof LxrError);
      assert.match(e.message, /mount overlay/);
      assert.equal(e.errno, 'ENOENT');
      return true;
    });
    assert.deepEqual(await fx.rt.list(), []);
  });
});
