// One gRPC call with the credentials a test gives, printed as one JSON line:
// {"ok":true,"response":...} or {"ok":false,"code":N,"reason":"...","message":"..."}.
// Trust tests run it inside the lab's network namespace (nsenter), where
// the controller's and agents' TCP ports are; the test process is not.
import * as grpc from '@grpc/grpc-js';
import { ClusterHostsClient, ContainersClient, HealthClient, TrustClient, unary, WorkspacesClient } from '../../proto/shared/api.js';
import { REASON_KEY } from '../../proto/shared/grpc-errors.js';

export interface Probe {
  target: string;
  client: 'workspaces' | 'hosts' | 'trust' | 'containers' | 'health';
  method: string;
  request?: object;
  /** PEM. Without ca the connection is plain (a client that does not speak TLS). */
  ca?: string;
  cert?: string;
  key?: string;
  token?: string;
}

export interface ProbeResult {
  ok: boolean;
  response?: unknown;
  code?: number;
  reason?: string;
  message?: string;
}

const CLIENTS = { workspaces: WorkspacesClient, hosts: ClusterHostsClient, trust: TrustClient, containers: ContainersClient, health: HealthClient };

export async function probe(p: Probe): Promise<ProbeResult> {
  const creds = p.ca
    ? grpc.credentials.createSsl(Buffer.from(p.ca), p.key ? Buffer.from(p.key) : null, p.cert ? Buffer.from(p.cert) : null, { checkServerIdentity: () => undefined })
    : grpc.credentials.createInsecure();
  const client = new CLIENTS[p.client](`dns:${p.target}`, creds, { 'grpc.ssl_target_name_override': 'lxr-probe' }) as unknown as grpc.Client & Record<string, never>;
  const md = new grpc.Metadata();
  if (p.token) md.set('authorization', `Bearer ${p.token}`);
  try {
    const response = await unary(client, (client as unknown as Record<string, Parameters<typeof unary>[1]>)[p.method]!, p.request ?? {}, { deadline: Date.now() + 10_000 }, md);
    return { ok: true, response };
  } catch (e) {
    const s = e as grpc.ServiceError;
    return { ok: false, code: s.code, reason: String(s.metadata?.get(REASON_KEY)[0] ?? ''), message: s.details };
  } finally {
    client.close();
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!) && process.argv[2]) {
  probe(JSON.parse(process.argv[2]) as Probe).then((r) => process.stdout.write(JSON.stringify(r) + '\n'));
}
