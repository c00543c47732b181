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
  return { code: r.status, err: r.stderr, out: r.stdout };
};
const agent = (...a: string[]) => run(process.execPath, [path.join(root, 'dist', 'agent', 'main.js'), ...a]);
const controller = (...a: string[]) => run(process.execPath, [path.join(root, 'dist', 'controller', 'main.js'), ...a]);
const lxrctl = (...a: string[]) => run(process.execPath, [path.join(root, 'dist', 'cli', 'lxrctl.js'), ...a]);
const netsetup = (...a: string[]) => run(path.join(root, 'native', 'build', 'lxr-netsetup'), a);

describe('command lines', () => {
  it('lxr-agent refuses bad flags before it starts', () => {
    for (const [args, msg] of [
      [['--bridge', 'br9'], /--bridge needs --subnet or --join/],
      [['--pool', '10.0.0.0/8'], /--pool needs --subnet/],
      [['--join', '198.18.0.254:7000', '--subnet', '10.0.0.0/24', '--listen', '198.18.0.1:7070'], /--subnet and --join exclude each other/],
      [['--controller', '198.18.0.254:7000'], /--join needs --listen/],
      [['--name', 'n1'], /--name and --advertise need --join/],
      [['--listen', '198.18.0.1:7070'], /--listen needs --join: TCP is mutual TLS/],
      [['--token', 'lxr1.x'], /--token needs --join/],
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

  it('lxr-controller refuses bad flags before it starts', () => {
    for (const [args, msg] of [
      [['--policy', 'random'], /--policy wants spread or binpack, got random/],
      [['--unready-policy', 'maybe'], /--unready-policy wants keep or reschedule, got maybe/],
      [['--heartbeat-interval', '5', '--host-grace', '2'], /--host-grace \(2 s\) must be longer than --heartbeat-interval \(5 s\)/],
      [['--subnet-prefix', 'x'], /--subnet-prefix wants a positive whole number, got x/],
      [['--reconcile-interval', '-1'], /--reconcile-interval wants a positive number, got -1/],
      [['--listen'], /--listen needs a value/],
      [['--cert-ttl', '5'], /--cert-ttl must be at least 10 seconds, got 5/],
      [['--tls-san'], /--tls-san needs a value/],
      [['--nope'], /unknown argument --nope/],
      [['token'], /token wants create, got nothing/],
      [['token', 'create', '--ttl', '0'], /--ttl wants a positive whole number, got 0/],
      [['token', 'create', '--bogus'], /unknown argument --bogus/],
    ] as const) {
      const r = controller(...args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.err, msg);
    }
    assert.equal(controller('version').out, 'lxr-controller 0.1.0\n');
    // token create with no controller on the socket: a clear failure, exit 1
    const none = controller('token', 'create', '--socket', path.join(root, 'dist', 'no-such-controller.sock'));
    assert.equal(none.code, 1);
    assert.match(none.err, /cannot reach the controller on .*no-such-controller\.sock/);
  });

  it('lxrctl refuses bad flags with exit code 2', () => {
    for (const [args, msg] of [
      [['lab', 'up', '--hosts', 'abc'], /--hosts wants a whole number, got "abc"/],
      [['lab', 'up', '--bogus'], /unknown flag --bogus for lxrctl lab up/],
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
