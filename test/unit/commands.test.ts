// Bad command lines are refused with a message naming the problem and a
// usage exit code: lxr-agent's flags, lxrctl's, and lxr-netsetup's
// arguments (which are checked before anything touches the kernel).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { repoRoot } from '../../proto/shared/api.js';

const root = repoRoot();
const run = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, err: r.stderr };
};
const agent = (...a: string[]) => run(process.execPath, [path.join(root, 'dist', 'agent', 'main.js'), ...a]);
const lxrctl = (...a: string[]) => run(process.execPath, [path.join(root, 'dist', 'cli', 'main.js'), ...a]);
const netsetup = (...a: string[]) => run(path.join(root, 'native', 'build', 'lxr-netsetup'), a);

describe('command lines', () => {
  it('lxr-agent refuses bad flags before it starts', () => {
    for (const [args, msg] of [
      [['--bridge', 'br9'], /--bridge and --pool need --subnet/],
      [['--pool', '10.0.0.0/8'], /--bridge and --pool need --subnet/],
      [['--exec-ring-bytes', '0'], /--exec-ring-bytes wants a positive whole number, got 0/],
      [['--exec-idle-timeout', 'soon'], /--exec-idle-timeout wants a positive whole number, got soon/],
      [['--root'], /--root needs a value/],
      [['--nope'], /unknown argument --nope/],
    ] as const) {
      const r = agent(...args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.err, msg);
    }
  });

  it('lxrctl refuses bad flags with exit code 2', () => {
    for (const [args, msg] of [
      [['lab', 'up', '--hosts', 'abc'], /--hosts wants a number, got abc/],
      [['lab', 'up', '--bogus'], /unknown argument --bogus/],
      [['lab', 'status', '--name'], /--name needs a value/],
    ] as const) {
      const r = lxrctl(...args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.err, msg);
    }
  });

  it('lxr-netsetup checks its arguments first', () => {
    assert.equal(netsetup('attach').code, 2);
    const bad = [
      [['attach', 'lxvx', 'br-none', '1', '10.0.0.2', '10.0.0.1'], /arguments: 10\.0\.0\.2 is not ADDRESS\/PREFIX/],
      [['attach', 'lxvx', 'br-none', '1', '10.0.0.2/24', 'gw'], /arguments: gw is not an address/],
      [['attach', 'lxvx', 'br-none-such', '1', '10.0.0.2/24', '10.0.0.1'], /find the bridge: br-none-such/],
    ] as const;
    for (const [args, msg] of bad) {
      const r = netsetup(...args);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.err, msg);
    }
  });
});
