// lxrctl's pure parts, without a server: argument parsing, output encoders
// (escaping of control characters above all), sizes and times, the detach
// key scanner, contexts, error -> exit code mapping, command lookup, the
// completion script (run by a real bash), and main() on bad input.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { parseArgs, UsageError, type ArgsSpec } from '../../cli/args.js';
import type { Io } from '../../cli/command.js';
import { bashCompletion } from '../../cli/commands/completion.js';
import { parsePort } from '../../cli/commands/workspaces.js';
import { DEFAULT_SERVER, normalizeServer, readConfig, resolveTarget } from '../../cli/config.js';
import { CliError, Exit, failureLine, toCliError } from '../../cli/failure.js';
import { COMMANDS, findCommand, main } from '../../cli/main.js';
import { age, bytes, escape, parseSince, parseSize, table, toJson, toYaml } from '../../cli/output.js';
import { DetachScanner, parseDetachKeys } from '../../cli/terminal.js';
import { LxrError } from '../../proto/shared/errors.js';
import { toStatus } from '../../proto/shared/grpc-errors.js';
import { repoRoot } from '../../proto/shared/api.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'lxr-cli-unit-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const spec: ArgsSpec = {
  flags: [
    { name: 'interactive', short: 'i', kind: 'bool', help: '' },
    { name: 'tty', short: 't', kind: 'bool', help: '' },
    { name: 'env', short: 'e', kind: 'list', help: '' },
    { name: 'tail', short: 'n', kind: 'int', help: '' },
    { name: 'workdir', short: 'w', kind: 'string', help: '' },
  ],
  positionals: ['NAME'],
  required: 1,
  command: true,
};

describe('lxrctl arguments', () => {
  it('reads flags the way docker users type them', () => {
    const cases: Array<[string[], Record<string, unknown>, string[], string[]]> = [
      [['ws'], {}, ['ws'], []],
      [['-it', 'ws', '--', 'sh'], { interactive: true, tty: true }, ['ws'], ['sh']],
      [['ws', '-e', 'A=1', '--env=B=2', '-eC=3'], { env: ['A=1', 'B=2', 'C=3'] }, ['ws'], []],
      [['--tail', '5', 'ws'], { tail: 5 }, ['ws'], []],
      [['-n5', 'ws'], { tail: 5 }, ['ws'], []],
      [['--tail=0', 'ws'], { tail: 0 }, ['ws'], []],
      [['-w', '/tmp', 'ws', 'ls', '-l'], { workdir: '/tmp' }, ['ws'], ['ls', '-l']],
      [['ws', '--', '-x', '--', 'y'], {}, ['ws'], ['-x', '--', 'y']],
      [['--tty=false', 'ws'], { tty: false }, ['ws'], []],
      [['--server', 'unix:///x', 'ws'], { server: 'unix:///x' }, ['ws'], []],
      [['ws', '-h'], { help: true }, ['ws'], []],
      [['-h'], { help: true }, [], []],
    ];
    for (const [argv, flags, positionals, command] of cases) {
      const p = parseArgs(argv, spec, 'lxrctl exec');
      assert.deepEqual(p.flags, flags, argv.join(' '));
      assert.deepEqual(p.positionals, positionals, argv.join(' '));
      assert.deepEqual(p.command, command, argv.join(' '));
    }
  });

  it('refuses what it cannot read, naming the flag', () => {
    const bad: Array<[string[], RegExp, ArgsSpec?]> = [
      [['--bogus', 'ws'], /unknown flag --bogus for lxrctl exec/],
      [['-x', 'ws'], /unknown flag -x/],
      [['--tail', 'abc', 'ws'], /--tail wants a whole number, got "abc"/],
      [['--tail'], /--tail needs a value/],
      [['-n'], /-n needs a value/],
      [['--tty=maybe', 'ws'], /--tty takes no value/],
      [[], /lxrctl exec needs NAME/],
      [['a', 'b'], /takes at most 1 argument \(NAME\), got "b"/, { ...spec, command: false }],
      [['a', '--', 'x'], /takes no command after --/, { ...spec, command: false }],
      [['x'], /takes no arguments, got "x"/, { flags: [], positionals: [], required: 0 }],
    ];
    for (const [argv, msg, s] of bad) {
      assert.throws(() => parseArgs(argv, s ?? spec, 'lxrctl exec'), (e: unknown) => e instanceof UsageError && msg.test(e.message), argv.join(' '));
    }
  });
});

describe('lxrctl output', () => {
  const nasty = 'a\u001b[31mred\u0007\u009b2J\u202eevil\u0000\n\tz\u007f';

  it('escapes every control character that could drive a terminal', () => {
    const e = escape(nasty);
    assert.equal(e, 'a\\e[31mred\\x07\\x9b2J\\u202eevil\\x00\\n\\tz\\x7f');
    assert.doesNotMatch(e, /[\u0000-\u001f\u007f-\u009f\u202a-\u202e]/);
    assert.equal(escape('plain ünïcode ✓'), 'plain ünïcode ✓');
  });

  it('JSON escapes C1 controls and bidi marks too, and stays valid JSON', () => {
    const j = toJson({ name: nasty, list: [nasty] });
    assert.doesNotMatch(j.replace(/\n/g, ''), /[\u0000-\u001f\u007f-\u009f\u202a-\u202e]/);
    assert.deepEqual(JSON.parse(j), { name: nasty, list: [nasty] });
  });

  it('YAML that a YAML parser reads back exactly, strings quoted when plain would change them', () => {
    const v = {
      name: 'ws1',
      numbers: ['1', '0x1f', '1e3', '-2.5', '.inf'],
      words: ['true', 'no', 'null', '~', 'Yes', 'on'],
      odd: [' lead', 'trail ', 'a: b', 'a #c', '- x', '', '[x]', '{y}', '*z', '&w', '!t', '%p', '@at', '`b`', '"q"', "'s'", '|', '>'],
      nasty,
      nested: { empty: {}, none: [], deep: [{ a: 1, b: [true, false, null] }, [1, 2]] },
      n: 42,
      f: 1.5,
      t: true,
    };
    const y = toYaml(v);
    assert.doesNotMatch(y.replace(/\n/g, ''), /[\u0000-\u001f\u007f-\u009f\u202a-\u202e]/);
    const parsed = execFileSync('/usr/bin/python3', ['-c', 'import sys, yaml, json; print(json.dumps(yaml.safe_load(sys.stdin.read())))'], { input: y }).toString();
    assert.deepEqual(JSON.parse(parsed), v);
    assert.match(y, /^name: ws1$/m, 'plain strings stay plain');
  });

  it('aligns tables and escapes their cells', () => {
    assert.equal(table(['NAME', 'STATE'], [['ws1', 'Running'], ['a-long-name', 'x\u001b']]), 'NAME          STATE\nws1           Running\na-long-name   x\\e\n');
  });

  it('ages, sizes and times', () => {
    const now = Date.parse('2026-11-23T12:00:00Z');
    const ages: Array<[string, string]> = [
      ['2026-11-23T11:59:55Z', '5s'],
      ['2026-11-23T11:58:01Z', '119s'],
      ['2026-11-23T11:50:00Z', '10m'],
      ['2026-11-23T09:00:00Z', '3h'],
      ['2026-11-20T12:00:00Z', '3d'],
      ['', ''],
      ['garbage', ''],
      ['2026-11-23T12:00:05Z', '0s'],
    ];
    for (const [t, want] of ages) assert.equal(age(t, now), want, t);
    assert.deepEqual([0, 1023, 1024, 1536, 10 * 1024 ** 2, 23.5 * 1024 ** 3].map(bytes), ['0B', '1023B', '1KiB', '1.5KiB', '10MiB', '23.5GiB']);
    assert.deepEqual(['1', '512m', '512M', '2g', '1.5GiB', '1k', '3MB'].map(parseSize), [1, 512 << 20, 512 << 20, 2 * 1024 ** 3, 1.5 * 1024 ** 3, 1024, 3 << 20]);
    for (const bad of ['', 'abc', '-1', '0', '1x', '1.5.5g']) assert.throws(() => parseSize(bad), new RegExp(`${JSON.stringify(bad).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a size`), bad);
    assert.equal(parseSince('10m', now), '2026-11-23T11:50:00.000Z');
    assert.equal(parseSince('2h', now), '2026-11-23T10:00:00.000Z');
    assert.equal(parseSince('2026-11-23T10:00:00Z', now), '2026-11-23T10:00:00.000Z');
    assert.equal(parseSince('2026-11-23T10:00:00+01:00', now), '2026-11-23T09:00:00.000Z');
    for (const bad of ['yesterday', '10', '10y', '2026-13-45T00:00:00Z']) assert.throws(() => parseSince(bad, now), /neither a duration/, bad);
  });

  it('reads -p HOST:CONTAINER[/proto] and refuses the rest', () => {
    assert.deepEqual(parsePort('8080:80'), { hostPort: 8080, containerPort: 80, protocol: 'tcp' });
    assert.deepEqual(parsePort('53:53/udp'), { hostPort: 53, containerPort: 53, protocol: 'udp' });
    for (const bad of ['80', '0:80', '80:70000', 'a:b', '80:80/sctp', '']) assert.throws(() => parsePort(bad), (e: unknown) => e instanceof CliError && e.exit === Exit.INVALID && /HOST:CONTAINER/.test(e.message), bad);
  });
});

describe('lxrctl detach keys', () => {
  const seq = parseDetachKeys('ctrl-p,ctrl-q');

  it('parses docker\'s key names', () => {
    assert.deepEqual([...seq], [0x10, 0x11]);
    assert.deepEqual([...parseDetachKeys('ctrl-a,x')], [1, 0x78]);
    assert.deepEqual([...parseDetachKeys('ctrl-@,ctrl-[')], [0, 27]);
    for (const bad of ['', 'ctrl-1', 'ctrl-', 'ab', 'ctrl-p,,ctrl-q']) assert.throws(() => parseDetachKeys(bad), /detach key|none given/, bad);
  });

  it('finds the sequence across chunks, passes everything else on in order', () => {
    const run = (chunks: string[]): { out: string; detached: boolean } => {
      const s = new DetachScanner(seq);
      let out = '';
      for (const c of chunks) {
        const r = s.feed(Buffer.from(c, 'latin1'));
        out += r.forward.toString('latin1');
        if (r.detach) return { out, detached: true };
      }
      return { out, detached: false };
    };
    const P = '\x10';
    const Q = '\x11';
    const cases: Array<[string[], string, boolean]> = [
      [['ls\r'], 'ls\r', false],
      [[`ab${P}${Q}cd`], 'ab', true],
      [[`ab${P}`, `${Q}cd`], 'ab', true],
      [[`${P}x`], `${P}x`, false],
      [[`${P}`, 'x'], `${P}x`, false],
      [[`${P}${P}${Q}`], P, true],
      [[`${Q}${P}`], Q, false],
      [[`${P}`], '', false],
      [['', `${P}`, '', `${Q}`], '', true],
    ];
    for (const [chunks, out, detached] of cases) assert.deepEqual(run(chunks), { out, detached }, JSON.stringify(chunks));
    // A sequence that repeats its own start: a,a,b.
    const aab = (chunks: string[]): { out: string; detach: boolean } => {
      const s = new DetachScanner(parseDetachKeys('a,a,b'));
      let out = '';
      for (const c of chunks) {
        const r = s.feed(Buffer.from(c));
        out += r.forward.toString();
        if (r.detach) return { out, detach: true };
      }
      return { out, detach: false };
    };
    assert.deepEqual(aab(['aaab']), { out: 'a', detach: true });
    assert.deepEqual(aab(['xaa', 'ab']), { out: 'xa', detach: true });
    assert.deepEqual(aab(['aac']), { out: 'aac', detach: false });
    assert.deepEqual(aab(['abaab']), { out: 'ab', detach: true });
  });
});

describe('lxrctl contexts', () => {
  const file = path.join(tmp, 'config.json');
  const write = (v: unknown): void => writeFileSync(file, typeof v === 'string' ? v : JSON.stringify(v));

  it('normalizes server addresses and refuses bad ones', () => {
    assert.equal(normalizeServer('unix:///run/x.sock'), 'unix:///run/x.sock');
    assert.equal(normalizeServer('unix:/run/x.sock'), 'unix:///run/x.sock');
    assert.equal(normalizeServer('/run/x.sock'), 'unix:///run/x.sock');
    assert.equal(normalizeServer('198.18.0.254:7000'), '198.18.0.254:7000');
    assert.equal(normalizeServer('[::1]:7000'), '[::1]:7000');
    for (const bad of ['unix://relative', 'host', 'host:0', 'host:99999', 'http://x:1']) assert.throws(() => normalizeServer(bad), (e: unknown) => e instanceof CliError && e.exit === Exit.INVALID, bad);
  });

  it('takes --server, then LXR_SERVER, then the context (--context, LXR_CONTEXT, current), then the default', () => {
    write({ currentContext: 'a', contexts: { a: { server: '/a.sock', token: 't' }, b: { server: '10.0.0.1:7000' } } });
    const env = { LXR_CONFIG: file };
    assert.deepEqual(resolveTarget({}, env), { address: 'unix:///a.sock', context: 'a', source: 'context', credentials: { token: 't' } });
    assert.equal(resolveTarget({ context: 'b' }, env).address, '10.0.0.1:7000');
    assert.equal(resolveTarget({}, { ...env, LXR_CONTEXT: 'b' }).address, '10.0.0.1:7000');
    assert.equal(resolveTarget({}, { ...env, LXR_SERVER: '/env.sock' }).address, 'unix:///env.sock');
    assert.equal(resolveTarget({ server: '/flag.sock' }, { ...env, LXR_SERVER: '/env.sock' }).address, 'unix:///flag.sock');
    // Flags before the environment: --context beats LXR_SERVER, and keeps its credentials.
    assert.deepEqual(resolveTarget({ context: 'a' }, { ...env, LXR_SERVER: '/env.sock' }), { address: 'unix:///a.sock', context: 'a', source: 'context', credentials: { token: 't' } });
    // --server takes the current context's credentials along.
    assert.deepEqual(resolveTarget({ server: '/flag.sock' }, env).credentials, { token: 't' });
    assert.throws(() => resolveTarget({}, { ...env, LXR_CONTEXT: 'gone' }), /no context "gone"/);
    assert.throws(() => resolveTarget({ server: '' }, env), /--server needs a value/);
    assert.throws(() => resolveTarget({ context: 'nope' }, env), (e: unknown) => e instanceof CliError && e.exit === Exit.NOT_FOUND && /no context "nope"/.test(e.message));
    assert.deepEqual(resolveTarget({}, { LXR_CONFIG: path.join(tmp, 'none.json') }), { address: DEFAULT_SERVER, context: '', source: 'default', credentials: {} });
  });

  it('names the file and the problem when the config is broken', () => {
    write('{not json');
    assert.throws(() => readConfig(file), (e: unknown) => e instanceof CliError && e.exit === Exit.INVALID && e.message.includes(file) && /not valid JSON/.test(e.message));
    write({ contexts: [] });
    assert.throws(() => readConfig(file), /must be an object with "contexts"/);
    write({ contexts: { x: { token: 'only' } } });
    assert.throws(() => readConfig(file), /context "x" has no "server"/);
  });
});

describe('lxrctl failures', () => {
  const ctx = { command: 'inspect', server: 'unix:///x.sock', subject: 'ws1' };
  const status = (e: LxrError): grpc.ServiceError => toStatus(e) as unknown as grpc.ServiceError;

  it('maps each reason to its exit code, with a next step', () => {
    const cases: Array<[unknown, number, RegExp]> = [
      [status(new LxrError('LXR_NOT_FOUND', 'workspace "ws1" not found')), Exit.NOT_FOUND, /lxrctl ps -a/],
      [status(new LxrError('LXR_NOT_FOUND', 'host "n9" not found')), Exit.NOT_FOUND, /lxrctl hosts ls/],
      [status(new LxrError('LXR_INVALID_ARGUMENT', 'invalid argument spec.image: required', { field: 'spec.image' })), Exit.INVALID, /lxrctl inspect --help/],
      [status(new LxrError('LXR_ILLEGAL_STATE', 'cannot start workspace "ws1": it is Failed')), Exit.FAILED, /lxrctl inspect ws1/],
      [status(new LxrError('LXR_ALREADY_EXISTS', 'workspace "ws1" already exists')), Exit.FAILED, /lxrctl rm -f ws1/],
      [status(new LxrError('LXR_NO_HOST_FITS', 'no host fits')), Exit.FAILED, /hosts ls/],
      [status(new LxrError('LXR_UNAVAILABLE', 'host n2 does not answer')), Exit.UNAVAILABLE, /lxrctl hosts ls shows whether that host is Ready/],
      [status(new LxrError('LXR_UNAVAILABLE', 'the controller is shutting down')), Exit.UNAVAILABLE, /lab up --controller/],
      [status(new LxrError('LXR_INTERNAL', 'boom')), Exit.FAILED, /^$/],
      [new UsageError('--tail needs a value'), Exit.INVALID, /--help/],
      [new Error('plain'), Exit.FAILED, /^$/],
    ];
    for (const [e, exit, hint] of cases) {
      const c = toCliError(e, ctx);
      assert.equal(c.exit, exit, c.message);
      assert.match(c.hint, hint, c.message);
    }
  });

  it('says a transport failure is an unreachable controller, naming where it looked', () => {
    const e = Object.assign(new Error('14 UNAVAILABLE'), { code: 14, details: 'No connection established. Last error: Error: connect ENOENT /x.sock. Resolution note: ', metadata: new grpc.Metadata() });
    const c = toCliError(e, ctx);
    assert.equal(c.exit, Exit.UNAVAILABLE);
    assert.equal(c.message, 'cannot reach the controller at unix:///x.sock (connect ENOENT)');
    const line = failureLine(c);
    assert.equal(line.split('\n').length, 2, 'one line');
  });

  it('prints server messages escaped, on one line', () => {
    const c = toCliError(status(new LxrError('LXR_NOT_FOUND', 'workspace "\u001b]0;pwned\u0007" not found\nsecond')), ctx);
    const line = failureLine(c);
    assert.doesNotMatch(line.slice(0, -1), /[\u0000-\u001f]/);
    assert.match(line, /\\e\]0;pwned\\x07/);
  });
});

describe('lxrctl commands', () => {
  it('finds a command by its words, flags and --server values aside', () => {
    const cases: Array<[string[], string, string[]]> = [
      [['ps', '-a'], 'ps', ['-a']],
      [['--server', '/x', 'ps'], 'ps', ['--server', '/x']],
      [['images', 'pull', 'busybox'], 'images pull', ['busybox']],
      [['images'], 'images', []],
      [['hosts', '-o', 'json'], 'hosts', ['-o', 'json']],
      [['exec', 'ls', 'ws1'], 'exec ls', ['ws1']],
      [['exec', 'ls', '--', 'sh'], 'exec', ['ls', '--', 'sh']],
      [['exec', '-it', 'ws1', '--', 'ls'], 'exec', ['-it', 'ws1', '--', 'ls']],
      [['rm', 'ps'], 'rm', ['ps']],
      [['images', '--server', '/x', 'pull', 'busybox'], 'images pull', ['--server', '/x', 'busybox']],
      [['hosts', '--context=c', 'cordon', 'n1'], 'hosts cordon', ['--context=c', 'n1']],
      [['logs', '-f', 'ps'], 'logs', ['-f', 'ps']],
    ];
    for (const [argv, path_, rest] of cases) {
      const f = findCommand(argv);
      assert.equal(f.command?.path.join(' '), path_, argv.join(' '));
      assert.deepEqual(f.rest, rest, argv.join(' '));
    }
    assert.equal(findCommand(['bogus']).command, null);
  });

  const io = (env: NodeJS.ProcessEnv = {}): { io: Io; out: () => string; err: () => string } => {
    const o = new PassThrough();
    const e = new PassThrough();
    let out = '';
    let err = '';
    o.on('data', (d) => (out += d));
    e.on('data', (d) => (err += d));
    return {
      io: { stdout: o as unknown as NodeJS.WriteStream, stderr: e as unknown as NodeJS.WriteStream, stdin: new PassThrough() as unknown as NodeJS.ReadStream, env: { LXR_CONFIG: path.join(tmp, 'main.json'), ...env }, now: () => Date.now() },
      out: () => out,
      err: () => err,
    };
  };

  it('refuses bad input before any request, with exit code 2 and one line', async () => {
    // The server does not exist: reaching it would be exit 3, not 2.
    const env = { LXR_SERVER: 'unix:///nonexistent/lxr.sock' };
    const bad: Array<[string[], RegExp]> = [
      [['create', 'Bad_Name', '--image', 'busybox'], /workspace name "Bad_Name" is not valid/],
      [['create', 'ws1'], /--image is required/],
      [['create', 'ws1', '--image', 'x', '--cpus', 'lots'], /--cpus "lots" is not a number/],
      [['create', 'ws1', '--image', 'x', '-m', '12q'], /--memory: "12q" is not a size/],
      [['create', 'ws1', '--image', 'x', '-p', '80'], /-p "80" is not HOST:CONTAINER/],
      [['create', 'ws1', '--image', 'x', '--label', 'novalue'], /--label "novalue" is not K=V/],
      [['create', 'ws1', '--image', 'x', '-e', 'LXR_SURELY_UNSET_VAR'], /there is no LXR_SURELY_UNSET_VAR here/],
      [['create', 'ws1', '--image', 'x', '--host', 'N1'], /host name "N1" is not valid/],
      [['exec', 'ws1'], /needs a command/],
      [['exec', '-it', 'ws1', '--', 'sh'], /-it needs a terminal on stdin/],
      [['exec', 'ws1', '--detach-keys', 'ctrl-1', '--', 'sh'], /--detach-keys/],
      [['logs', 'ws1', '--since', 'yesterday'], /--since: "yesterday" is neither/],
      [['logs', 'ws1', '--tail', '-3'], /--tail -3: must be 0 or more/],
      [['stop', 'ws1', '-t', '99999'], /grace time must be 1-3600/],
      [['stop', 'ws1', '-t', '0'], /grace time must be 1-3600/],
      [['ps', '--server='], /--server needs a value/],
      [['ps', '-o', ''], /-o needs a value/],
      [['rm', 'ok', 'NOT-OK'], /workspace name "NOT-OK" is not valid/],
      [['ps', '-o', 'xml'], /-o "xml": choose json, yaml, wide/],
      [['attach', 'nonsense'], /session id "nonsense" is not WORKSPACE\/ID/],
      [['hosts', 'cordon', 'N_1'], /host name "N_1" is not valid/],
      [['images', 'pull', 'x', '--host', 'Bad'], /host name "Bad" is not valid/],
      [['completion', 'fish'], /choose bash or zsh/],
      [['ps', '--bogus'], /unknown flag --bogus for lxrctl ps/],
      [['inspect'], /lxrctl inspect needs NAME/],
      [['config', 'set-context', 'x'], /needs --server/],
      [['config', 'use-context', 'bad name'], /context name "bad name"/],
      [['--server', 'nonsense', 'ps'], /server "nonsense" is neither/],
      [['bogus'], /unknown command "bogus"/],
      [['images', 'bogus'], /unknown command "images bogus"/],
      [['credentials', 'create', 'Bad_Name'], /credential name "Bad_Name" is not valid/],
      [['credentials', 'create', 'alice', '--ttl', '0s'], /--ttl: "0s" is not a duration/],
      [['credentials', 'create', 'alice', '--ttl', 'forever'], /--ttl: "forever" is not a duration/],
      [['credentials', 'create', 'alice', '--csr', '/nonexistent/alice.csr'], /--csr: cannot read \/nonexistent\/alice\.csr: ENOENT/],
      [['credentials', 'revoke'], /needs NAME/],
      [['open', 'Bad_Name'], /workspace name "Bad_Name" is not valid/],
      [['open'], /needs NAME/],
      [['port-forward', 'ws1', '80:'], /"80:" is not \[LOCAL:\]REMOTE/],
      [['port-forward', 'ws1', '70000'], /ports are 1-65535/],
      [['port-forward', 'Bad', '80'], /workspace name "Bad" is not valid/],
    ];
    for (const [argv, msg] of bad) {
      const t = io(env);
      const code = await main(argv, t.io);
      assert.equal(code, Exit.INVALID, `${argv.join(' ')}: ${t.err()}`);
      assert.match(t.err(), msg, argv.join(' '));
      assert.match(t.err(), /^lxrctl: /, argv.join(' '));
      assert.equal(t.out(), '', argv.join(' '));
    }
  });

  it('an unreachable controller is exit code 3 with where it looked', async () => {
    const t = io({ LXR_SERVER: '/nonexistent/lxr.sock' });
    assert.equal(await main(['ps'], t.io), Exit.UNAVAILABLE);
    assert.match(t.err(), /cannot reach the controller at unix:\/\/\/nonexistent\/lxr\.sock \(connect ENOENT\) \(LXR_UNAVAILABLE\); is lxr-controller running/);
    assert.equal(t.err().trimEnd().split('\n').length, 1);
  });

  it('a context\'s TLS files are checked before any connection: a certificate without its key, a file that is not there', async () => {
    const file = path.join(tmp, 'tls.json');
    writeFileSync(file, JSON.stringify({ currentContext: 'half', contexts: { half: { server: '198.18.0.9:7000', cert: 'me.pem' }, gone: { server: '198.18.0.9:7000', ca: 'missing-ca.pem' } } }));
    const half = io({ LXR_CONFIG: file });
    assert.equal(await main(['ps'], half.io), Exit.INVALID);
    assert.match(half.err(), /context half: a client certificate needs both "cert" and "key"/);
    const gone = io({ LXR_CONFIG: file });
    assert.equal(await main(['ps', '--context', 'gone'], gone.io), Exit.INVALID);
    // Relative to the config file's directory, as kubeconfig's paths are.
    assert.match(gone.err(), new RegExp(`context gone: cannot read its CA ${path.join(tmp, 'missing-ca.pem').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    const setBad = io({ LXR_CONFIG: file });
    assert.equal(await main(['config', 'set-context', 'x', '--server', '/x.sock', '--cert', 'c.pem'], setBad.io), Exit.INVALID);
    assert.match(setBad.err(), /--cert and --key go together/);
    // A TCP controller without the cluster's CA: refused before a token could be sent to an unproven server.
    const noCa = io({ LXR_CONFIG: path.join(tmp, 'none.json'), LXR_SERVER: '198.18.0.9:7000' });
    assert.equal(await main(['ps'], noCa.io), Exit.INVALID);
    assert.match(noCa.err(), /server 198\.18\.0\.9:7000: a controller over TCP is checked against the cluster's CA, and none is set \(LXR_INVALID_SPEC\); lxrctl config set-context NAME --server 198\.18\.0\.9:7000 --ca CA\.crt/);
  });

  it('manages contexts in a 0600 file', async () => {
    const t = io();
    const file = t.io.env['LXR_CONFIG']!;
    assert.equal(await main(['config', 'set-context', 'one', '--server', '/one.sock', '--token', 'sekret'], t.io), 0);
    assert.equal(await main(['config', 'set-context', 'two', '--server', '10.1.1.1:7000'], t.io), 0);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(readConfig(file).currentContext, 'one', 'the first context becomes current');
    assert.equal(await main(['config', 'use-context', 'two'], t.io), 0);
    const v = io({ LXR_CONFIG: file });
    assert.equal(await main(['config', 'view'], v.io), 0);
    assert.doesNotMatch(v.out(), /sekret/);
    assert.match(v.out(), /REDACTED/);
    const g = io({ LXR_CONFIG: file });
    await main(['config', 'get-contexts'], g.io);
    assert.match(g.out(), /^\*\s+two\s+10\.1\.1\.1:7000/m);
    const missing = io({ LXR_CONFIG: file });
    assert.equal(await main(['config', 'use-context', 'three'], missing.io), Exit.NOT_FOUND);
    assert.equal(await main(['config', 'delete-context', 'two'], t.io), 0);
    assert.equal(readConfig(file).currentContext, '');
    assert.deepEqual(Object.keys(readConfig(file).contexts), ['one']);
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).contexts.one.token, 'sekret');
  });

  it('help for every command, and the overview', async () => {
    for (const c of COMMANDS) {
      const t = io();
      assert.equal(await main([...c.path, '--help'], t.io), 0, c.path.join(' '));
      assert.match(t.out(), new RegExp(`^usage: lxrctl ${c.path.join(' ')}`), c.path.join(' '));
    }
    const t = io();
    assert.equal(await main(['--help'], t.io), 0);
    for (const w of ['create', 'ps', 'exec', 'attach', 'logs', 'hosts', 'images', 'lab', 'config', 'version', 'completion']) assert.match(t.out(), new RegExp(`^  ${w} `, 'm'), w);
  });
});

describe('lxrctl completion (bash)', () => {
  const script = bashCompletion(COMMANDS);
  const complete = (words: string[]): string[] => {
    const r = spawnSync('bash', ['-c', `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _lxrctl; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter(Boolean).sort();
  };

  it('completes commands, subcommands and flags from the command table', () => {
    assert.deepEqual(complete(['lxrctl', 'ex']), ['exec']);
    assert.deepEqual(complete(['lxrctl', 'i']), ['images', 'inspect']);
    assert.deepEqual(complete(['lxrctl', 'images', 'p']), ['pull']);
    assert.deepEqual(complete(['lxrctl', 'hosts', '']), ['cordon', 'drain', 'inspect', 'ls', 'rm', 'uncordon']);
    assert.deepEqual(complete(['lxrctl', 'exec', '--w']), ['--workdir']);
    assert.deepEqual(complete(['lxrctl', '--server', '/x', 'logs', '--ta']), ['--tail']);
    assert.deepEqual(complete(['lxrctl', 'create', 'ws', '--image', 'busybox', '--cp']), ['--cpus']);
    assert.deepEqual(complete(['lxrctl', 'exec', 'ws', '--', '']), [], 'nothing after --');
  });

  it('is valid bash', () => {
    const r = spawnSync('bash', ['-n'], { input: script });
    assert.equal(r.status, 0, String(r.stderr));
  });
});

describe('bin/lxrctl, the launcher', () => {
  // A copy of the launcher beside a fake build: a "bundle" and "modules" that say which ran.
  const dir = path.join(tmp, 'launcher');
  const cli = path.join(dir, 'dist', 'cli');
  const launcher = path.join(dir, 'bin', 'lxrctl');
  const runIt = (env: NodeJS.ProcessEnv = {}): string => execFileSync(process.execPath, [launcher], { env: { PATH: process.env['PATH'], ...env } }).toString();
  const setMtime = (f: string, s: number): void => utimesSync(f, s, s);

  it('runs the bundle when it is newer than its inputs, with a code cache; the modules otherwise', () => {
    mkdirSync(cli, { recursive: true });
    mkdirSync(path.join(dir, 'bin'), { recursive: true });
    writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}\n');
    writeFileSync(launcher, readFileSync(path.join(repoRoot(), 'bin', 'lxrctl')));
    writeFileSync(path.join(cli, 'lxrctl.js'), "process.stdout.write('modules\\n');\n");
    writeFileSync(path.join(cli, 'lxrctl.bundle.cjs'), "process.stdout.write('bundle ' + require('path').basename(__dirname) + '\\n');\n");
    writeFileSync(path.join(cli, 'lxrctl.bundle.cjs.inputs.json'), '["lxrctl.js"]\n');
    setMtime(path.join(cli, 'lxrctl.js'), 1000);
    setMtime(path.join(cli, 'lxrctl.bundle.cjs'), 2000);
    assert.equal(runIt(), 'bundle cli\n');
    assert.ok(existsSync(path.join(cli, 'lxrctl.bundle.cjs.cache')), 'the code cache is written after the first run');
    assert.equal(runIt(), 'bundle cli\n', 'and used by the next');
    writeFileSync(path.join(cli, 'lxrctl.bundle.cjs.cache'), 'garbage');
    assert.equal(runIt(), 'bundle cli\n', 'a cache V8 rejects is only slower');
    assert.equal(runIt({ LXR_NO_BUNDLE: '1' }), 'modules\n');
    setMtime(path.join(cli, 'lxrctl.js'), 3000);
    assert.equal(runIt(), 'modules\n', 'a bundle older than an input is not used');
    rmSync(path.join(cli, 'lxrctl.bundle.cjs.inputs.json'));
    setMtime(path.join(cli, 'lxrctl.js'), 1000);
    assert.equal(runIt(), 'modules\n', 'nor one whose inputs are unknown');
  });
});
