// Where lxrctl finds its controller, as kubectl does with kubeconfig: a
// file of named contexts (server address, credentials) with a current one,
// overridden by --context/LXR_CONTEXT and by --server/LXR_SERVER. The file is
// JSON, written atomically with mode 0600 because contexts hold credentials.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CliError, Exit, invalid } from './failure.js';
import { DEFAULT_CONTROLLER_SOCKET } from '../proto/shared/version.js';

export const DEFAULT_SERVER = `unix://${DEFAULT_CONTROLLER_SOCKET}`;

export interface Context {
  /** unix:///PATH or HOST:PORT. */
  server: string;
  /** Sent as "authorization: Bearer TOKEN" on every call. */
  token?: string;
  /** PEM files for TLS to a TCP server: the CA to trust, and a client certificate and key. */
  ca?: string;
  cert?: string;
  key?: string;
}

export interface Config {
  currentContext: string;
  contexts: Record<string, Context>;
}

export const configPath = (env: NodeJS.ProcessEnv = process.env): string => env['LXR_CONFIG'] || path.join(env['HOME'] || os.homedir(), '.lxr', 'config.json');

const CONTEXT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$/;

export function checkContextName(name: string): string {
  if (!CONTEXT_NAME.test(name)) throw invalid(`context name ${JSON.stringify(name)} must be 1-100 letters, digits, '-', '_', '.' or '@', starting with a letter or digit`);
  return name;
}

/** The failure of naming a context the config does not have. */
export const noContext = (name: string, file: string): CliError =>
  new CliError(`no context ${JSON.stringify(name)} in ${file}`, Exit.NOT_FOUND, 'LXR_NOT_FOUND', 'lxrctl config get-contexts lists them');

/** unix:///p, unix:/p, /p, HOST:PORT -> the grpc-js target, or a usage error naming the input. */
export function normalizeServer(s: string): string {
  if (s.startsWith('unix:')) {
    const p = s.replace(/^unix:(\/\/)?/, '');
    if (!p.startsWith('/')) throw invalid(`server ${JSON.stringify(s)}: a unix socket needs an absolute path (unix:///run/lxr/controller.sock)`);
    return `unix://${p}`;
  }
  if (s.startsWith('/')) return `unix://${s}`;
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw invalid(`server ${JSON.stringify(s)} is neither unix:///PATH nor HOST:PORT`);
  return s;
}

export function readConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { currentContext: '', contexts: {} };
    throw new CliError(`cannot read the config ${file}: ${(e as Error).message}`, Exit.FAILED, 'LXR_INTERNAL');
  }
  let c: Partial<Config>;
  try {
    c = JSON.parse(text) as Partial<Config>;
  } catch (e) {
    throw new CliError(`the config ${file} is not valid JSON: ${(e as Error).message}`, Exit.INVALID, 'LXR_INVALID_SPEC', `fix or remove it (lxrctl config view shows what lxrctl reads)`);
  }
  if (typeof c !== 'object' || c === null || (c.contexts !== undefined && (typeof c.contexts !== 'object' || c.contexts === null || Array.isArray(c.contexts)))) {
    throw new CliError(`the config ${file} must be an object with "contexts" (an object of name -> {server, ...}) and "currentContext"`, Exit.INVALID, 'LXR_INVALID_SPEC');
  }
  for (const [name, ctx] of Object.entries(c.contexts ?? {})) {
    if (typeof ctx !== 'object' || ctx === null || typeof ctx.server !== 'string') {
      throw new CliError(`the config ${file}: context ${JSON.stringify(name)} has no "server"`, Exit.INVALID, 'LXR_INVALID_SPEC');
    }
  }
  return { currentContext: typeof c.currentContext === 'string' ? c.currentContext : '', contexts: c.contexts ?? {} };
}

/** JSON written whole or not at all, readable by its owner only. */
function writeJson(target: string, value: unknown): void {
  mkdirSync(path.dirname(target), { recursive: true, mode: 0o700 });
  const tmp = `${target}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, target);
}

export const writeConfig = (file: string, c: Config): void => writeJson(file, c);

/** A file of lxrctl's own beside the config (sessions.json). */
export const writeBeside = (file: string, name: string, value: unknown): void => writeJson(path.join(path.dirname(file), name), value);

/** Changes the config file under `f` (read, change, write). */
export function updateConfig(file: string, f: (c: Config) => void): Config {
  const c = readConfig(file);
  f(c);
  writeConfig(file, c);
  return c;
}

export interface Target {
  /** The grpc-js target. */
  address: string;
  /** Which context it came from, if any. */
  context: string;
  /** Where the address came from: flag, env, context or default. */
  source: 'flag' | 'env' | 'context' | 'default';
  credentials: Omit<Context, 'server'>;
}

/**
 * Where to connect, flags before the environment as kubectl has it:
 * --server, --context, LXR_SERVER, LXR_CONTEXT, the current context, then
 * the default socket. A context's credentials go with it (also under --server).
 */
export function resolveTarget(o: { server?: string; context?: string }, env: NodeJS.ProcessEnv = process.env, file = configPath(env)): Target {
  if (o.server === '' || o.context === '') throw invalid(`--${o.server === '' ? 'server' : 'context'} needs a value`);
  const envServer = env['LXR_SERVER'] || '';
  const envContext = env['LXR_CONTEXT'] || '';
  const context = (name: string, required: boolean): { name: string; ctx: Context } | null => {
    const cfg = readConfig(file);
    const n = name || cfg.currentContext;
    const ctx = n ? cfg.contexts[n] : undefined;
    if (!ctx && required) throw noContext(n, file);
    return ctx ? { name: n, ctx } : null;
  };
  const target = (address: string, source: Target['source'], c: { name: string; ctx: Context } | null): Target => {
    const { server: _s, ...credentials } = c?.ctx ?? { server: '' };
    return { address: normalizeServer(address), context: c?.name ?? '', source, credentials };
  };
  if (o.server) {
    // The address from the flag; credentials from the context named, else the current one.
    const wanted = o.context || envContext;
    return target(o.server, 'flag', context(wanted, wanted !== ''));
  }
  if (o.context) return target(context(o.context, true)!.ctx.server, 'context', context(o.context, true));
  if (envServer) return target(envServer, 'env', null);
  const c = context(envContext, envContext !== '');
  return c ? target(c.ctx.server, 'context', c) : { address: DEFAULT_SERVER, context: '', source: 'default', credentials: {} };
}
