// Makes lxrctl start fast: bundles dist/cli/lxrctl.js and everything it
// imports (grpc-js, protobufjs, ...) into one CommonJS file that bin/lxrctl
// loads with a V8 code cache. Node 20 has no compile cache for ES modules,
// and loading ~100 small modules cost more than running the command.
// Each module keeps its own import.meta.url, made from the bundle's
// directory at run time (the repository can move), and the bundle's inputs
// under dist/ are listed beside it so bin/lxrctl can tell a stale bundle.
import { rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.join(root, 'dist', 'cli');
const out = path.join(outDir, 'lxrctl.bundle.cjs');

const keepImportMetaUrl = {
  name: 'import-meta-url',
  setup(b) {
    b.onLoad({ filter: /[\\/]dist[\\/].*\.js$/ }, async (args) => {
      const src = await readFile(args.path, 'utf8');
      const rel = JSON.stringify(path.relative(outDir, args.path));
      const url = `require("url").pathToFileURL(require("path").join(__dirname, ${rel})).href`;
      return { contents: src.replaceAll('import.meta.url', url), loader: 'js' };
    });
  },
};

const result = await build({
  entryPoints: [path.join(outDir, 'lxrctl.js')],
  outfile: out,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minify: true,
  legalComments: 'none',
  // Native addons stay outside (lxrctl needs none).
  external: ['node-pty'],
  plugins: [keepImportMetaUrl],
  metafile: true,
  logLevel: 'warning',
});
const inputs = Object.keys(result.metafile.inputs)
  .filter((f) => !f.includes('node_modules'))
  .map((f) => path.relative(outDir, path.resolve(root, f)));
writeFileSync(out + '.inputs.json', JSON.stringify(inputs) + '\n');
// A cache made for an older bundle would be rejected anyway; start afresh.
rmSync(out + '.cache', { force: true });
