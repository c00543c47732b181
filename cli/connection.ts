// lxrctl's link to a controller: one channel per run, the clients it needs
// made on first use, credentials from the context, and the default
// deadline for unary calls (streams have none: exec and logs -f last).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  CLIENT_OPTIONS,
  ClusterExecClient,
  ClusterHostsClient,
  ClusterImagesClient,
  HealthClient,
  TrustClient,
  WorkspacesClient,
  type ExecClient,
  type UnaryMethod,
} from '../proto/shared/api.js';
import { CliError, Exit } from './failure.js';
import type { Target } from './config.js';
import { expectController, identityCheck, tlsNameOptions } from '../proto/shared/tls.js';

/** Unary calls give up after this (a host that blackholes packets). */
export const UNARY_DEADLINE_MS = 60_000;

type Ctor<C> = new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions) => C;

function channelCredentials(t: Target, configFile: string): grpc.ChannelCredentials {
  const { ca, cert, key } = t.credentials;
  // The unix socket is root-only and plain; TCP is always TLS (the controller serves nothing else),
  // checked against the cluster's CA: a token is never sent to a server that was not proven the controller.
  if (t.address.startsWith('unix://')) return grpc.credentials.createInsecure();
  if (!!cert !== !!key) throw new CliError(`context ${t.context}: a client certificate needs both "cert" and "key"`, Exit.INVALID, 'LXR_INVALID_SPEC');
  if (!ca) throw new CliError(`${t.context ? `context ${t.context}` : `server ${t.address}`}: a controller over TCP is checked against the cluster's CA, and none is set`, Exit.INVALID, 'LXR_INVALID_SPEC', `lxrctl config set-context NAME --server ${t.address} --ca CA.crt (the CA comes with lxrctl credentials create, or is <controller root>/pki/ca.crt)`);
  const read = (f: string | undefined, what: string): Buffer | null => {
    if (!f) return null;
    // Relative paths in a context are relative to the config file, as kubeconfig's are.
    const full = path.resolve(path.dirname(configFile), f);
    try {
      return readFileSync(full);
    } catch (e) {
      throw new CliError(`context ${t.context}: cannot read its ${what} ${full}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, Exit.INVALID, 'LXR_INVALID_SPEC');
    }
  };
  // With the cluster's CA, the server must be the controller its certificate names (any address it is reached by).
  return grpc.credentials.createSsl(read(ca, 'CA'), read(key, 'key'), read(cert, 'certificate'), { checkServerIdentity: identityCheck(expectController) });
}

export class Connection {
  private clients = new Map<unknown, grpc.Client>();
  private creds: grpc.ChannelCredentials | null = null;

  constructor(
    readonly target: Target,
    private readonly configFile: string,
  ) {}

  private client<C extends grpc.Client>(ctor: Ctor<C>): C {
    let c = this.clients.get(ctor) as C | undefined;
    if (!c) {
      this.creds ??= channelCredentials(this.target, this.configFile);
      // Every client shares one channel (grpc-js pools by target and options).
      c = new ctor(this.target.address, this.creds, this.target.address.startsWith('unix://') ? CLIENT_OPTIONS : { ...CLIENT_OPTIONS, ...tlsNameOptions('lxr-controller') });
      this.clients.set(ctor, c);
    }
    return c;
  }

  get workspaces(): WorkspacesClient {
    return this.client<WorkspacesClient>(WorkspacesClient);
  }
  get hosts(): ClusterHostsClient {
    return this.client<ClusterHostsClient>(ClusterHostsClient);
  }
  get exec(): ExecClient {
    return this.client<ExecClient>(ClusterExecClient);
  }
  get images(): ClusterImagesClient {
    return this.client<ClusterImagesClient>(ClusterImagesClient);
  }
  get trust(): TrustClient {
    return this.client<TrustClient>(TrustClient);
  }
  get health(): HealthClient {
    return this.client<HealthClient>(HealthClient);
  }

  /** Call metadata: the context's token. */
  metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.target.credentials.token) md.set('authorization', `Bearer ${this.target.credentials.token}`);
    return md;
  }

  /** A unary call with the default deadline (or `deadlineMs`; 0 = none). */
  call<Req, Res>(client: grpc.Client, method: UnaryMethod<Req, Res>, req: Req, deadlineMs = UNARY_DEADLINE_MS): Promise<Res> {
    const opts: grpc.CallOptions = deadlineMs > 0 ? { deadline: Date.now() + deadlineMs } : {};
    return new Promise<Res>((resolve, reject) => {
      method.call(client, req, this.metadata(), opts, (err, res) => (err ? reject(err) : resolve(res as Res)));
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
