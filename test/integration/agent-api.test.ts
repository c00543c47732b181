// lxr-agent's gRPC API end to end: a real agent (startAgent) on a unix
// socket in a temp root with its own cgroup parent, a real grpc-js client
// from proto/shared/api.ts, a loopback registry to pull a busybox image
// from, and real containers.
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { hostPlatform } from '../../agent/image/registry/platform.js';
import { startAgent, type Agent } from '../../agent/server.js';
import { ContainersClient, HealthClient, HostClient, ImagesClient, unary, type Container, type Event, type LogsResponse, type PullResponse } from '../../proto/shared/api.js';
import { rootLogger } from '../../proto/shared/log.js';
import { removeCgroupTree } from '../helpers/cgroups.js';
import { tarLayer } from '../helpers/layers.js';
import { ociImageOf, type TestImage } from '../helpers/oci-image.js';
import { TestPusher, type TestRegistry } from '../helpers/registry.js';
import { agentTestSkip, busyboxRegistry, cleanupSteps, collect, grpcErr } from '../helpers/agent.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const skip = agentTestSkip;





describe('agent gRPC API', { skip, timeout: 180_000 }, () => {
  let work: string;
  let reg: TestRegistry;
  let agent: Agent;
  let cgroupParent: string;
  let host: HostClient;
  let images: ImagesClient;
  let ctrs: ContainersClient;
  let health: HealthClient;
  let socket: string;
  let image: string;
  let img: TestImage;
  const made = new Set<string>();

  before(async () => {
    work = await ownedTempDir('agentapi');
    cgroupParent = uniqueId('lxr-test-');
    socket = path.join(work, 'run', 'agent.sock');
    ({ reg, image, img } = await busyboxRegistry(work, { 'org.example': 'agent-api' }));
    agent = await startAgent({ root: path.join(work, 'root'), socket, cgroupParent, log: rootLogger('lxr-agent-test', process.env.LXR_LOG_LEVEL ?? 'warn') });
    const creds = grpc.credentials.createInsecure();
    host = new HostClient(agent.address, creds);
    images = new ImagesClient(agent.address, creds);
    ctrs = new ContainersClient(agent.address, creds);
    health = new HealthClient(agent.address, creds);
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
    for (const c of [host, images, ctrs, health]) await step(() => c?.close());
    await step(() => agent?.close());
    await step(() => reg?.stop());
    await step(async () => {
      const { killed } = await removeCgroupTree(cgroupParent);
      if (killed.length > 0) throw new Error(`processes left in ${cgroupParent}: ${killed.join(' ')}`);
    });
    await step(() => work && rm(work, { recursive: true, force: true }));
    done('agent-api');
  });

  /** Container `name` once its exit is recorded (or as it is after 2.5 s). */
  async function finished(name: string): Promise<Container> {
    let c = (await unary(ctrs, ctrs.Get, { name })).container!;
    for (let i = 0; i < 50 && !c.finishedAt; i++) {
      await new Promise((r) => setTimeout(r, 50));
      c = (await unary(ctrs, ctrs.Get, { name })).container!;
    }
    return c;
  }

  /** The events of container `name` from now on; stop() ends the stream and gives them. */
  async function watchEvents(name: string): Promise<{ stop(): Promise<Event[]> }> {
    const events: Event[] = [];
    const stream = ctrs.Events({ names: [name] });
    stream.on('data', (e: Event) => events.push(e));
    const ended = new Promise<void>((resolve) => {
      stream.on('error', () => resolve());
      stream.on('end', () => resolve());
    });
    // The stream is registered before the first event.
    await new Promise((r) => setTimeout(r, 200));
    return {
      async stop() {
        await new Promise((r) => setTimeout(r, 100));
        stream.cancel();
        await ended;
        return events;
      },
    };
  }

  test('socket is 0600 and health says SERVING', async () => {
    assert.equal(statSync(socket).mode & 0o777, 0o600);
    assert.ok(statSync(socket).isSocket());
    for (const service of ['', 'lxr.agent.v1.Containers', 'lxr.agent.v1.Images', 'lxr.agent.v1.Host']) {
      assert.deepEqual(await unary(health, health.Check, { service }), { status: 'SERVING' }, service);
    }
    await assert.rejects(unary(health, health.Check, { service: 'nope' }), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);
  });

  test('Host.GetInfo', async () => {
    const info = await unary(host, host.GetInfo, {});
    assert.ok(info.hostname.length > 0);
    assert.match(info.kernel, /^\d+\.\d+/);
    assert.ok(['v1', 'v2', 'hybrid'].includes(info.cgroupMode), info.cgroupMode);
    if (existsSync('/sys/fs/cgroup/unified') && existsSync('/sys/fs/cgroup/memory')) assert.equal(info.cgroupMode, 'hybrid');
    assert.ok(info.cpus > 0);
    assert.ok(info.memoryBytes > 0);
    assert.equal(info.architecture, hostPlatform().architecture);
    assert.equal(info.version, '0.1.0');
    assert.ok(info.usage);
    assert.equal(info.usage.containers, 0);
    assert.ok(info.usage.memoryUsedBytes > 0 && info.usage.memoryUsedBytes <= info.memoryBytes);
    assert.ok(info.usage.load1 >= 0);
  });

  test('Images: Pull streams progress then the image; List and Inspect show it', async () => {
    const msgs = await collect<PullResponse>(images.Pull({ image }));
    assert.ok(msgs.length >= 2);
    const last = msgs.at(-1)!;
    assert.equal(last.event, 'image');
    assert.ok(msgs.slice(0, -1).every((m) => m.event === 'progress'));
    const states = msgs.slice(0, -1).map((m) => m.progress!.state);
    assert.equal(states[0], 'waiting');
    assert.equal(states.at(-1), 'done');
    assert.ok(msgs.slice(0, -1).every((m) => m.progress!.digest === img.layers[0]!.digest));
    assert.deepEqual(last.image!.names, [image]);
    assert.equal(last.image!.digest, img.manifest.digest);
    assert.equal(last.image!.configDigest, img.config.digest);
    assert.equal(last.image!.platform!.architecture, hostPlatform().architecture);
    assert.ok(last.image!.sizeBytes > 0);

    const list = await unary(images, images.List, {});
    assert.deepEqual(list.images.map((i) => i.digest), [img.manifest.digest]);
    const ins = await unary(images, images.Inspect, { image });
    assert.deepEqual(ins.config!.cmd, ['/bin/sh']);
    assert.deepEqual(ins.config!.entrypoint, []);
    assert.deepEqual(ins.config!.labels, { 'org.example': 'agent-api' });
    assert.deepEqual(ins.layers, [img.layers[0]!.digest]);
    await assert.rejects(unary(images, images.Inspect, { image: `${reg.host}/lxr/none:v1` }), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND'));
    await assert.rejects(unary(images, images.Inspect, {}), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'image' }));
  });

  test('Containers: lifecycle, logs, stats, errors and events', async () => {
    const name = uniqueId('c');
    made.add(name);
    const ev = await watchEvents(name);

    const req = { name, image, command: ['sh', '-c', 'echo hi; sleep 30'], labels: { app: 'test' }, requestId: 'req-1' };
    const created = (await unary(ctrs, ctrs.Create, req)).container!;
    assert.equal(created.name, name);
    assert.equal(created.state, 'created');
    assert.equal(created.imageDigest, img.manifest.digest);
    assert.deepEqual(created.labels, { app: 'test' });

    // Idempotent with the same request id; ALREADY_EXISTS otherwise.
    const again = (await unary(ctrs, ctrs.Create, req)).container!;
    assert.equal(again.createdAt, created.createdAt);
    await assert.rejects(unary(ctrs, ctrs.Create, { ...req, requestId: 'req-2' }), grpcErr(grpc.status.ALREADY_EXISTS, 'LXR_ALREADY_EXISTS'));
    await assert.rejects(unary(ctrs, ctrs.Create, { ...req, requestId: '' }), grpcErr(grpc.status.ALREADY_EXISTS, 'LXR_ALREADY_EXISTS'));
    await assert.rejects(unary(ctrs, ctrs.Create, { ...req, name: '-bad/name' }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'name' }));
    // An IDE is one LXR runs, and listens on the container's address: this agent has no network.
    await assert.rejects(unary(ctrs, ctrs.Create, { ...req, name: `${name}-ide`, ide: 'vim' }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'ide', message: /"vim" is not an IDE LXR runs/ }));
    await assert.rejects(unary(ctrs, ctrs.Create, { ...req, name: `${name}-ide`, ide: 'code-server' }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'ide', message: /code-server listens on the container's own address: it needs network mode "bridge"/ }));

    const started = (await unary(ctrs, ctrs.Start, { name })).container!;
    assert.equal(started.state, 'running');
    assert.ok(started.pid > 0);
    assert.ok(started.startedAt);
    await assert.rejects(unary(ctrs, ctrs.Start, { name }), grpcErr(grpc.status.FAILED_PRECONDITION, 'LXR_ILLEGAL_STATE', { message: /running/ }));

    // The echo runs right after start: wait for it to reach the log.
    let logs: LogsResponse[] = [];
    for (let i = 0; i < 50; i++) {
      logs = await collect<LogsResponse>(ctrs.Logs({ name }));
      if (logs.length > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(
      logs.map((l) => [l.stream, l.line.toString(), l.partial]),
      [['stdout', 'hi', false]],
    );
    assert.ok(!Number.isNaN(Date.parse(logs[0]!.time)));
    assert.deepEqual(await collect<LogsResponse>(ctrs.Logs({ name, stderr: true })), []);

    const stats = await unary(ctrs, ctrs.Stats, { name });
    assert.ok(stats.pids >= 1, JSON.stringify(stats));
    assert.ok(stats.memoryUsageBytes > 0, JSON.stringify(stats));

    const listed = await unary(ctrs, ctrs.List, { labels: { app: 'test' }, states: ['running'] });
    assert.deepEqual(listed.containers.map((c) => c.name), [name]);
    assert.deepEqual((await unary(ctrs, ctrs.List, { states: ['stopped'] })).containers, []);
    assert.equal((await unary(host, host.GetInfo, {})).usage!.running, 1);

    const stopped = (await unary(ctrs, ctrs.Stop, { name, graceSeconds: 1 })).container!;
    assert.equal(stopped.state, 'stopped');
    assert.ok([137, 143].includes(stopped.exitCode), String(stopped.exitCode));
    assert.ok(stopped.finishedAt);
    assert.equal(stopped.pid, 0);

    await unary(ctrs, ctrs.Remove, { name });
    made.delete(name);
    await assert.rejects(unary(ctrs, ctrs.Get, { name }), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND'));
    assert.equal(existsSync(path.join(work, 'root', 'containers', name)), false);
    assert.equal(existsSync(path.join(work, 'root', 'containers', `${name}.json`)), false);

    const events = await ev.stop();
    assert.deepEqual(
      events.map((e) => e.type),
      ['created', 'started', 'died', 'removed'],
    );
    assert.ok(events.every((e) => e.name === name));
    const died = events.find((e) => e.type === 'died')!;
    assert.equal(died.exitCode, stopped.exitCode);
  });

  test('Containers: Create with start runs it in the same call', async () => {
    const name = uniqueId('c');
    made.add(name);
    const ev = await watchEvents(name);
    const req = { name, image, command: ['sleep', '30'], start: true, requestId: 'run-1' };
    const c = (await unary(ctrs, ctrs.Create, req)).container!;
    assert.equal(c.state, 'running');
    assert.ok(c.pid > 0);
    assert.ok(c.startedAt && c.createdAt);
    assert.equal((await readFile(`/proc/${c.pid}/cmdline`, 'utf8')).split('\0')[0], 'sleep', 'its init runs the command');
    // The same request again is the same container; Start says it already runs.
    const again = (await unary(ctrs, ctrs.Create, req)).container!;
    assert.equal(again.createdAt, c.createdAt);
    assert.equal(again.state, 'running');
    await assert.rejects(unary(ctrs, ctrs.Start, { name }), grpcErr(grpc.status.FAILED_PRECONDITION, 'LXR_ILLEGAL_STATE', { message: /running/ }));
    const stopped = (await unary(ctrs, ctrs.Stop, { name, graceSeconds: 1 })).container!;
    assert.equal(stopped.state, 'stopped');
    assert.equal(stopped.startedAt, c.startedAt, 'the start was recorded once');
    await unary(ctrs, ctrs.Remove, { name });
    made.delete(name);
    const events = await ev.stop();
    assert.deepEqual(
      events.map((e) => e.type),
      ['created', 'started', 'died', 'removed'],
    );

    // A command that exits at once: it runs once; the same create again does not run it again.
    const quick = uniqueId('c');
    made.add(quick);
    const qev = await watchEvents(quick);
    const qreq = { name: quick, image, command: ['true'], start: true, requestId: 'run-2' };
    await unary(ctrs, ctrs.Create, qreq);
    const q = await finished(quick);
    assert.equal(q.state, 'stopped');
    assert.equal(q.exitCode, 0);
    const retried = (await unary(ctrs, ctrs.Create, qreq)).container!;
    assert.equal(retried.state, 'stopped', 'a retried create does not start it again');
    assert.equal(retried.startedAt, q.startedAt);
    await unary(ctrs, ctrs.Remove, { name: quick });
    made.delete(quick);
    assert.deepEqual(
      (await qev.stop()).map((e) => e.type),
      ['created', 'started', 'died', 'removed'],
    );

    // A create that fails fails the same with start, and leaves the name free.
    const bad = uniqueId('c');
    await assert.rejects(unary(ctrs, ctrs.Create, { name: bad, image, command: ['/no/such/binary'], start: true }), grpcErr(grpc.status.NOT_FOUND, 'LXR_EXEC_NOT_FOUND', { message: /\/no\/such\/binary/ }));
    await assert.rejects(unary(ctrs, ctrs.Get, { name: bad }), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND'));
    await assert.rejects(unary(ctrs, ctrs.Create, { name: '-bad/name', image, start: true }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'name' }));
  });

  test('Containers: Create with start whose start fails (a program the kernel cannot execute) leaves the container, as docker run does', async () => {
    // A file with the execute bit but neither ELF nor #!: found at create, refused by execve only at start.
    const cfg = (JSON.parse(img.config.data.toString()) as { config: Record<string, unknown> }).config;
    const bad = ociImageOf([...img.tars, tarLayer([{ path: 'bin/notelf', body: 'no program here\n', mode: 0o755 }])], hostPlatform(), cfg);
    const pusher = new TestPusher(reg.host);
    try {
      await pusher.pushImage('lxr/notelf', bad, 'v1');
    } finally {
      pusher.close();
    }
    const name = uniqueId('c');
    made.add(name);
    const ev = await watchEvents(name);
    const req = { name, image: `${reg.host}/lxr/notelf:v1`, command: ['/bin/notelf'], start: true, requestId: 'run-notelf' };
    await assert.rejects(unary(ctrs, ctrs.Create, req), grpcErr(grpc.status.PERMISSION_DENIED, 'LXR_EXEC_NOT_EXECUTABLE', { message: /start .*\/bin\/notelf/ }));
    const c = await finished(name);
    assert.equal(c.state, 'stopped');
    assert.equal(c.exitCode, 126);
    assert.equal(c.startedAt, '', 'a start that failed is not a start');
    // The same request again answers with it as it is; it is not run again.
    const again = (await unary(ctrs, ctrs.Create, req)).container!;
    assert.equal(again.createdAt, c.createdAt);
    assert.equal(again.state, 'stopped');
    await unary(ctrs, ctrs.Remove, { name });
    made.delete(name);
    assert.deepEqual(
      (await ev.stop()).map((e) => e.type),
      ['created', 'died', 'removed'],
    );
    await unary(images, images.Remove, { image: req.image });
  });

  test('Containers: followed logs end when the container exits; kill, force remove', async () => {
    const name = uniqueId('c');
    made.add(name);
    await unary(ctrs, ctrs.Create, { name, image, command: ['sh', '-c', 'echo a; echo b >&2; sleep 0.5; printf c'] });
    const followed = collect<LogsResponse>(ctrs.Logs({ name, follow: true }));
    await unary(ctrs, ctrs.Start, { name });
    const lines = await followed;
    assert.deepEqual(
      lines.map((l) => [l.stream, l.line.toString(), l.partial]),
      [
        ['stdout', 'a', false],
        ['stderr', 'b', false],
        // The last line has no newline; at EOF the runtime's log writer ends it as a full line (CRI's rule).
        ['stdout', 'c', false],
      ],
    );
    assert.deepEqual((await collect<LogsResponse>(ctrs.Logs({ name, tail: 1 }))).map((l) => l.line.toString()), ['c']);
    assert.deepEqual((await collect<LogsResponse>(ctrs.Logs({ name, stderr: true }))).map((l) => l.line.toString()), ['b']);
    assert.deepEqual(await collect<LogsResponse>(ctrs.Logs({ name, since: '2999-01-01T00:00:00Z' })), []);
    await assert.rejects(collect(ctrs.Logs({ name, since: 'yesterday' })), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'since' }));
    let c = await finished(name);
    assert.equal(c.state, 'stopped');
    assert.equal(c.exitCode, 0);
    assert.ok(c.finishedAt);
    await unary(ctrs, ctrs.Remove, { name });
    made.delete(name);

    // A running container: kill with a signal, remove needs force.
    const name2 = uniqueId('c');
    made.add(name2);
    await unary(ctrs, ctrs.Create, { name: name2, image, command: ['sleep', '30'] });
    await unary(ctrs, ctrs.Start, { name: name2 });
    await assert.rejects(unary(ctrs, ctrs.Kill, { name: name2, signal: 'SIGNOPE' }), grpcErr(grpc.status.INVALID_ARGUMENT, 'LXR_INVALID_ARGUMENT', { field: 'signal' }));
    await assert.rejects(unary(ctrs, ctrs.Remove, { name: name2 }), grpcErr(grpc.status.FAILED_PRECONDITION, 'LXR_ILLEGAL_STATE', { message: /running/ }));
    const follow = ctrs.Logs({ name: name2, follow: true });
    const followEnded = collect<LogsResponse>(follow).then(
      () => 'end',
      (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? 'cancelled' : String(e)),
    );
    await new Promise((r) => setTimeout(r, 200));
    follow.cancel();
    assert.equal(await followEnded, 'cancelled');
    await unary(ctrs, ctrs.Kill, { name: name2, signal: 'KILL' });
    await unary(ctrs, ctrs.Remove, { name: name2, force: true });
    made.delete(name2);
    await assert.rejects(unary(ctrs, ctrs.Stats, { name: name2 }), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND'));
    assert.deepEqual((await unary(ctrs, ctrs.List, {})).containers, []);
  });
});
