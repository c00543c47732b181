// lxrctl credentials: people's credentials for a cluster (issue 8). A
// bearer token, or a client certificate for a key the person made (with
// openssl; lxrctl never sees it). The controller serves these calls only on
// its unix socket, so they are run as root on the controller's machine.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from '../command.js';
import { Exit, invalid } from '../failure.js';
import { age, escape, parseDuration, table, toJson } from '../output.js';
import { checkName, outputFlag, outputMode } from './common.js';

const create: Command = {
  path: ['credentials', 'create'],
  usage: 'NAME',
  summary: 'make a token (or, with --csr, a client certificate) for a person',
  args: {
    flags: [
      { name: 'ttl', kind: 'string', value: 'DURATION', help: 'how long it is valid: 30s, 10m, 2h, 30d (default 30d)' },
      { name: 'csr', kind: 'string', value: 'FILE', help: 'a PEM certificate request for the person\'s own ECDSA P-256 key: a certificate instead of a token' },
      { name: 'out', kind: 'string', value: 'DIR', help: 'where NAME.crt (with --csr) and ca.crt are written (default .)' },
    ],
    positionals: ['NAME'],
    required: 1,
  },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const name = checkName(inv.args.positionals[0]!, 'credential');
    const ttlFlag = inv.args.flags.ttl as string | undefined;
    let ttlSeconds = 0;
    if (ttlFlag !== undefined) {
      try {
        ttlSeconds = parseDuration(ttlFlag);
      } catch (e) {
        throw invalid(`--ttl: ${(e as Error).message}`);
      }
    }
    const csrFile = inv.args.flags.csr as string | undefined;
    let csr = '';
    if (csrFile !== undefined) {
      try {
        csr = readFileSync(csrFile, 'utf8');
      } catch (e) {
        throw invalid(`--csr: cannot read ${csrFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
    const out = path.resolve((inv.args.flags.out as string | undefined) ?? '.');
    const c = inv.connection();
    const res = await c.call(c.trust, c.trust.CreateCredential, { name, ttlSeconds, csr });
    const caFile = path.join(out, 'ca.crt');
    try {
      writeFileSync(caFile, res.ca, { mode: 0o644 });
      if (res.certificate) writeFileSync(path.join(out, `${name}.crt`), res.certificate, { mode: 0o644 });
    } catch (e) {
      throw invalid(`--out: cannot write into ${out}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (res.token) {
      inv.out(`${res.token}\n`);
      inv.err(`token ${res.id} for ${name}, valid until ${res.expiresAt}; the cluster CA is in ${caFile}\nuse it: lxrctl config set-context NAME --server CONTROLLER:PORT --ca ${caFile} --token TOKEN\n`);
    } else {
      inv.out(`${path.join(out, `${name}.crt`)}\n`);
      inv.err(`certificate ${res.id} for ${name}, valid until ${res.expiresAt}; the cluster CA is in ${caFile}\nuse it: lxrctl config set-context NAME --server CONTROLLER:PORT --ca ${caFile} --cert ${path.join(out, `${name}.crt`)} --key YOUR.key\n`);
    }
    return Exit.OK;
  },
};

const ls: Command = {
  path: ['credentials', 'ls'],
  usage: '',
  summary: 'list people\'s credentials (never their secrets)',
  args: { flags: [outputFlag], positionals: [], required: 0 },
  async run(inv) {
    const mode = outputMode(inv, ['json']);
    const c = inv.connection();
    const res = await c.call(c.trust, c.trust.ListCredentials, {});
    if (mode === 'json') return (inv.out(toJson(res.credentials)), Exit.OK);
    const now = inv.io.now();
    inv.out(table(['ID', 'NAME', 'KIND', 'AGE', 'EXPIRES', 'STATE'], res.credentials.map((x) => [x.id, escape(x.name), x.kind, age(x.createdAt, now), x.expiresAt, x.revoked ? 'revoked' : Date.parse(x.expiresAt) < now ? 'expired' : 'valid'])));
    return Exit.OK;
  },
};

const revoke: Command = {
  path: ['credentials', 'revoke'],
  usage: 'NAME',
  summary: 'revoke every credential of a person: each later call with them is refused',
  args: { flags: [], positionals: ['NAME'], required: 1 },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const name = checkName(inv.args.positionals[0]!, 'credential');
    const c = inv.connection();
    const res = await c.call(c.trust, c.trust.RevokeCredential, { name });
    inv.out(res.revoked.length ? res.revoked.map((x) => `revoked ${x.kind} ${x.id} of ${escape(x.name)}\n`).join('') : `${name} has no credential left to revoke\n`);
    return Exit.OK;
  },
};

export const credentialCommands: Command[] = [create, ls, revoke];
