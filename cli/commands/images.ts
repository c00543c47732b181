// lxrctl images: images on the cluster's hosts (through the controller's
// Images service): pull with a progress bar per layer and host, list,
// remove, and import an archive from this machine.
import { createReadStream, statSync } from 'node:fs';
import type { LayerProgress } from '../../proto/shared/api-types.js';
import type { ClusterImportImageResponse } from '../../proto/shared/controller-types.js';
import { pump } from '../../proto/shared/pump.js';
import type { Command, Invocation } from '../command.js';
import { CliError, Exit, invalid } from '../failure.js';
import { age, bytes, escape, table, toJson, toYaml } from '../output.js';
import { checkName, outputFlag, outputMode } from './common.js';

const hostsFlag = { name: 'host', kind: 'list', value: 'HOST', help: 'only on this host (repeatable); default: every Ready host' } as const;

function targetHosts(inv: Invocation): string[] {
  return inv.list('host').map((h) => checkName(h, 'host'));
}

const BAR = 24;

function progressLine(host: string, p: LayerProgress): string {
  const id = p.digest.replace(/^sha256:/, '').slice(0, 12);
  const head = `${host} ${id} ${p.state.padEnd(11)}`;
  if (p.state !== 'downloading' || !p.total) return p.total ? `${head} ${bytes(p.total)}` : head;
  const done = Math.min(BAR, Math.floor((p.current / p.total) * BAR));
  return `${head} [${'='.repeat(Math.max(0, done - 1))}${done > 0 ? '>' : ''}${' '.repeat(BAR - done)}] ${bytes(p.current)}/${bytes(p.total)}`;
}

/** One line per (host, layer): redrawn in place on a terminal, printed on each change of state otherwise. */
class Progress {
  private lines = new Map<string, string>();
  private states = new Map<string, string>();
  private drawn = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly out: NodeJS.WriteStream) {}

  update(host: string, p: LayerProgress): void {
    const key = `${host} ${p.digest}`;
    this.lines.set(key, escape(progressLine(host, p)));
    if (!this.out.isTTY) {
      if (this.states.get(key) !== p.state) this.out.write(this.lines.get(key)! + '\n');
      this.states.set(key, p.state);
      return;
    }
    this.timer ??= setTimeout(() => this.draw(), 100);
  }

  draw(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.out.isTTY) return;
    let s = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
    const width = (this.out.columns || 120) - 1;
    for (const l of this.lines.values()) s += `\x1b[2K${l.slice(0, width)}\n`;
    this.drawn = this.lines.size;
    this.out.write(s);
  }
}

const pull: Command = {
  path: ['images', 'pull'],
  usage: 'REF [--host HOST]...',
  summary: 'pull an image onto hosts, with a progress bar per layer',
  args: { flags: [hostsFlag], positionals: ['REF'], required: 1 },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const image = inv.args.positionals[0]!;
    const hosts = targetHosts(inv);
    const c = inv.connection();
    const progress = new Progress(inv.io.stdout);
    const pulled: string[] = [];
    const stream = c.images.Pull({ image, hosts }, c.metadata());
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (m) => {
        if (m.progress) progress.update(m.host, m.progress);
        else if (m.image) pulled.push(`${escape(m.host)}: ${escape(m.image.names[0] ?? image)} ${escape(m.image.digest)}`);
      });
      stream.on('error', (e) => {
        progress.draw();
        reject(e);
      });
      stream.on('end', () => {
        progress.draw();
        resolve();
      });
    });
    for (const p of pulled) inv.out(`pulled ${p}\n`);
    return Exit.OK;
  },
};

const ls: Command = {
  path: ['images', 'ls'],
  usage: '[--host HOST] [-o json|yaml|wide]',
  summary: 'list the images on each host',
  args: { flags: [{ name: 'host', kind: 'string', value: 'HOST', help: 'only this host' }, outputFlag], positionals: [], required: 0 },
  async run(inv) {
    const mode = outputMode(inv, ['json', 'yaml', 'wide']);
    const host = inv.flag('host');
    if (host !== undefined) checkName(host, 'host');
    const c = inv.connection();
    const r = await c.call(c.images, c.images.List, { host: host ?? '' });
    const list = [...r.images].sort((a, b) => a.host.localeCompare(b.host) || (a.image?.names[0] ?? '').localeCompare(b.image?.names[0] ?? ''));
    if (mode === 'json') inv.out(toJson(r));
    else if (mode === 'yaml') inv.out(toYaml(r));
    else {
      const now = inv.io.now();
      const rows: string[][] = [];
      for (const { host: h, image } of list) {
        if (!image) continue;
        const names = image.names.length ? image.names : ['<none>'];
        for (const n of names) {
          rows.push([h, n, image.digest.replace(/^sha256:/, '').slice(0, mode === 'wide' ? 64 : 12), bytes(image.sizeBytes), age(image.created, now), ...(mode === 'wide' ? [`${image.platform?.os ?? ''}/${image.platform?.architecture ?? ''}`] : [])]);
        }
      }
      inv.out(table(['HOST', 'IMAGE', 'DIGEST', 'SIZE', 'AGE', ...(mode === 'wide' ? ['PLATFORM'] : [])], rows));
    }
    for (const u of r.unreachable) inv.err(`lxrctl: warning: not listed: ${escape(u)}\n`);
    return Exit.OK;
  },
};

const rm: Command = {
  path: ['images', 'rm'],
  usage: 'REF [--host HOST]...',
  summary: 'remove an image name from hosts (the image goes with its last name, unless in use)',
  args: { flags: [hostsFlag], positionals: ['REF'], required: 1 },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const image = inv.args.positionals[0]!;
    const hosts = targetHosts(inv);
    const c = inv.connection();
    const r = await c.call(c.images, c.images.Remove, { image, hosts });
    for (const x of r.removed) {
      inv.out(`${escape(x.host)}: untagged ${x.untagged.map(escape).join(', ') || '-'}${x.deleted ? `; deleted ${escape(x.deleted)}` : ''}\n`);
    }
    return Exit.OK;
  },
};

const CHUNK = 1 << 20;

const importCmd: Command = {
  path: ['images', 'import'],
  usage: 'FILE [--host HOST]... [--repository REPO]',
  summary: 'import an image archive from this machine (OCI layout tar or docker save; - for stdin)',
  args: {
    flags: [hostsFlag, { name: 'repository', kind: 'string', value: 'REPO', help: 'repository for images whose archive names only a tag' }],
    positionals: ['FILE'],
    required: 1,
  },
  async run(inv) {
    const file = inv.args.positionals[0]!;
    const hosts = targetHosts(inv);
    if (file !== '-') {
      let st;
      try {
        st = statSync(file);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') throw new CliError(`file ${file} does not exist`, Exit.NOT_FOUND, 'LXR_NOT_FOUND', 'give the path of an OCI layout tar or a docker save archive');
        throw invalid(`cannot read ${file}: ${(e as Error).message}`);
      }
      if (!st.isFile()) throw invalid(`${file} is not a file: give an OCI layout as a tar, or a docker save archive`);
      if (st.size === 0) throw invalid(`${file} is empty: give an OCI layout as a tar, or a docker save archive`);
    }
    const src: NodeJS.ReadableStream = file === '-' ? inv.io.stdin : createReadStream(file, { highWaterMark: CHUNK });
    const c = inv.connection();
    const result = await new Promise<ClusterImportImageResponse>((resolve, reject) => {
      const call = c.images.Import(c.metadata(), (err, res) => (err ? reject(err) : resolve(res!)));
      call.write({ header: { hosts, repository: inv.flag('repository') ?? '' } });
      pump<Buffer, { data: Buffer }>(src, call, (chunk) => ({ data: chunk }));
      src.on('error', (e: Error) => {
        call.cancel();
        reject(invalid(`cannot read ${file}: ${e.message}`));
      });
      src.on('end', () => call.end());
    });
    for (const h of result.imported) {
      for (const img of h.images) inv.out(`${escape(h.host)}: imported ${escape(img.names.join(', ') || '<none>')} ${escape(img.digest)}\n`);
    }
    return Exit.OK;
  },
};

export const imageCommands: Command[] = [{ ...ls, path: ['images'] }, ls, pull, rm, importCmd];
