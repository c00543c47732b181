#!/usr/bin/env node
// Lists the hosts and workspaces of an LXR cluster: a plain gRPC client of
// lxr-controller, with no code from this repository. It loads the .proto
// files at run time (@grpc/grpc-js and @grpc/proto-loader), so any
// language with gRPC can do the same from proto/.
//
//   node examples/list-workspaces.mjs [ADDRESS]
//
// ADDRESS is the controller's gRPC address: unix:///PATH (its socket,
// default unix:///run/lxr/controller.sock) or HOST:PORT (lxr-controller
// --listen). Inside this repository the two npm packages come from its
// node_modules; elsewhere: npm install @grpc/grpc-js @grpc/proto-loader.
// LXR_PROTO_DIR points at another copy of proto/.
//
// Exit codes: 0 listed, 1 the controller answered with an error or could
// not be reached, 2 bad usage.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const args = process.argv.slice(2);
if (args.length > 1 || args[0] === '-h' || args[0] === '--help') {
  process.stderr.write('usage: node examples/list-workspaces.mjs [unix:///PATH | HOST:PORT]\n');
  process.exit(args[0] === '-h' || args[0] === '--help' ? 0 : 2);
}
const address = args[0] ?? 'unix:///run/lxr/controller.sock';

// proto/ next to examples/, unless told otherwise. controller.proto imports
// lxr/agent/v1/agent.proto, so the include dir is proto/ itself.
const protoDir = process.env.LXR_PROTO_DIR ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'proto');
const definition = protoLoader.loadSync('lxr/controller/v1/controller.proto', {
  includeDirs: [protoDir],
  keepCase: false, // fields in camelCase: memoryBytes, reservedCpus
  longs: Number, // uint64 as numbers (byte counts fit)
  enums: String,
  defaults: true,
  oneofs: true,
});
const api = grpc.loadPackageDefinition(definition).lxr.controller.v1;

const credentials = grpc.credentials.createInsecure(); // no TLS yet (issue 8)
const hosts = new api.Hosts(address, credentials);
const workspaces = new api.Workspaces(address, credentials);

/** A unary call as a promise, with a deadline. */
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** Why a call failed: the gRPC status plus LXR's reason and field from the trailers. */
function describe(err) {
  const code = Object.keys(grpc.status).find((k) => grpc.status[k] === err.code) ?? String(err.code);
  const reason = err.metadata?.get('lxr-reason')[0];
  const field = err.metadata?.get('lxr-field')[0];
  return `${code}${reason ? ` ${reason}` : ''}${field ? ` (field ${field})` : ''}: ${err.details || err.message}`;
}

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n';
}

const gib = (b) => `${(b / 2 ** 30).toFixed(1)}Gi`;

try {
  const { hosts: hs } = await call(hosts, 'List', {});
  const { workspaces: ws } = await call(workspaces, 'List', {});

  process.stdout.write(`HOSTS (${hs.length})\n`);
  process.stdout.write(
    table([
      ['NAME', 'STATE', 'ADDRESS', 'SUBNET', 'CPUS', 'MEMORY', 'RESERVED', 'WORKSPACES'],
      ...hs.map((h) => [h.name, h.state + (h.cordoned ? ',Cordoned' : ''), h.address, h.subnet, h.cpus, gib(h.memoryBytes), `${h.reservedCpus} cpu, ${gib(h.reservedMemoryBytes)}`, h.workspaces]),
    ]),
  );
  process.stdout.write(`\nWORKSPACES (${ws.length})\n`);
  process.stdout.write(
    table([
      ['NAME', 'STATE', 'HOST', 'ADDRESS', 'IMAGE', 'REASON'],
      ...ws.map((w) => [w.spec.name, w.state, w.host, w.address || '-', w.spec.image, w.reasonCode ? `${w.reasonCode}: ${w.reason}` : w.reason || '']),
    ]),
  );
} catch (err) {
  // UNAVAILABLE without an lxr-reason comes from the client library itself:
  // nothing answered at that address (ENOENT: no such socket; ECONNREFUSED:
  // nothing listens; EACCES: the socket is root's, mode 0600).
  const unreachable = err.code === grpc.status.UNAVAILABLE && !err.metadata?.get('lxr-reason').length;
  const message = unreachable
    ? `cannot reach the controller at ${address}: ${err.details.replace(/\s*Resolution note:\s*$/, '')} (is lxr-controller running, and is this its socket or --listen address?)`
    : err.code === undefined
      ? err.message
      : describe(err);
  process.stderr.write(`list-workspaces: ${message}\n`);
  process.exitCode = 1;
} finally {
  hosts.close();
  workspaces.close();
}
