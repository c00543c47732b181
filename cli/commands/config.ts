// lxrctl config: the contexts in lxrctl's config file, as kubectl config
// manages kubeconfig. Tokens are never printed back.
import type { Command } from '../command.js';
import { checkContextName, noContext, normalizeServer, readConfig, updateConfig, type Context } from '../config.js';
import { CliError, Exit, invalid } from '../failure.js';
import { table, toJson } from '../output.js';

const redacted = (c: Context): Context => ({ ...c, ...(c.token ? { token: 'REDACTED' } : {}) });

const view: Command = {
  path: ['config', 'view'],
  usage: '',
  summary: 'print the config file (tokens redacted) and where it is',
  args: { flags: [], positionals: [], required: 0 },
  async run(inv) {
    const c = readConfig(inv.configFile);
    inv.out(toJson({ file: inv.configFile, currentContext: c.currentContext, contexts: Object.fromEntries(Object.entries(c.contexts).map(([k, v]) => [k, redacted(v)])) }));
    return Exit.OK;
  },
};

const getContexts: Command = {
  path: ['config', 'get-contexts'],
  usage: '',
  summary: 'list the contexts (* marks the current one)',
  args: { flags: [], positionals: [], required: 0 },
  async run(inv) {
    const c = readConfig(inv.configFile);
    const rows = Object.entries(c.contexts)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, ctx]) => [name === c.currentContext ? '*' : '', name, ctx.server, ctx.token ? 'token' : ctx.cert ? 'certificate' : '-']);
    inv.out(table(['CURRENT', 'NAME', 'SERVER', 'CREDENTIALS'], rows));
    return Exit.OK;
  },
};

const currentContext: Command = {
  path: ['config', 'current-context'],
  usage: '',
  summary: 'print the current context',
  args: { flags: [], positionals: [], required: 0 },
  async run(inv) {
    const c = readConfig(inv.configFile);
    if (!c.currentContext) throw new CliError(`no current context in ${inv.configFile}`, Exit.NOT_FOUND, 'LXR_NOT_FOUND', 'lxrctl config use-context NAME sets one');
    inv.out(`${c.currentContext}\n`);
    return Exit.OK;
  },
};

const useContext: Command = {
  path: ['config', 'use-context'],
  usage: 'NAME',
  summary: 'make a context the current one',
  args: { flags: [], positionals: ['NAME'], required: 1 },
  async run(inv) {
    const name = checkContextName(inv.args.positionals[0]!);
    updateConfig(inv.configFile, (c) => {
      if (!c.contexts[name]) throw noContext(name, inv.configFile);
      c.currentContext = name;
    });
    inv.out(`now using context ${name}\n`);
    return Exit.OK;
  },
};

const setContext: Command = {
  path: ['config', 'set-context'],
  usage: 'NAME --server ADDRESS [--token T] [--ca F --cert F --key F] [--use]',
  summary: 'add or change a context',
  args: {
    flags: [
      { name: 'token', kind: 'string', value: 'TOKEN', help: 'a bearer token sent on every call' },
      { name: 'ca', kind: 'string', value: 'FILE', help: 'PEM CA to trust for a TCP server' },
      { name: 'cert', kind: 'string', value: 'FILE', help: 'PEM client certificate' },
      { name: 'key', kind: 'string', value: 'FILE', help: 'PEM client key' },
      { name: 'use', kind: 'bool', help: 'also make it the current context' },
    ],
    positionals: ['NAME'],
    required: 1,
  },
  async run(inv) {
    const name = checkContextName(inv.args.positionals[0]!);
    const server = inv.flag('server');
    if (!!inv.flag('cert') !== !!inv.flag('key')) throw invalid('--cert and --key go together');
    updateConfig(inv.configFile, (c) => {
      const prev = c.contexts[name];
      if (!prev && !server) throw invalid(`context ${name} is new: it needs --server (unix:///PATH or HOST:PORT)`);
      const next: Context = { ...(prev ?? { server: '' }), ...(server ? { server: normalizeServer(server) } : {}) };
      for (const k of ['token', 'ca', 'cert', 'key'] as const) {
        const v = inv.flag(k);
        if (v !== undefined) next[k] = v;
      }
      c.contexts[name] = next;
      if (inv.bool('use') || !c.currentContext) c.currentContext = name;
    });
    inv.out(`context ${name} saved in ${inv.configFile}\n`);
    return Exit.OK;
  },
};

const deleteContext: Command = {
  path: ['config', 'delete-context'],
  usage: 'NAME',
  summary: 'remove a context',
  args: { flags: [], positionals: ['NAME'], required: 1 },
  async run(inv) {
    const name = checkContextName(inv.args.positionals[0]!);
    updateConfig(inv.configFile, (c) => {
      if (!c.contexts[name]) throw noContext(name, inv.configFile);
      delete c.contexts[name];
      if (c.currentContext === name) c.currentContext = '';
    });
    inv.out(`context ${name} removed\n`);
    return Exit.OK;
  },
};

export const configCommands: Command[] = [view, getContexts, currentContext, useContext, setContext, deleteContext];
