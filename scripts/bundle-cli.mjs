// Makes lxrctl start fast: bundles dist/cli/lxrctl.js and everything it
// imports (grpc-js, proto-loader, ...) into one CommonJS file that
// bin/lxrctl loads with a V8 code cache (cli/launch.ts). Node 20 has no
// compile cache for ES modules; loading ~100 small modules cost more than
// running the command. Each module keeps its own import.meta.url (it finds
// the repository and the .proto files by it).
import { readFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'cli', 'lxrctl.bundle.cjs');

const keepImportMetaUrl = {
  name: 'import-meta-url',
  setup(b) {
    b.onLoad({ filter: /[\\/]dist[\\/].*\.js$/ }, async (args) => {
      const src = await readFile(args.path, 'utf8');
      return { contents: src.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href)), loader: 'js' };
    });
  },
};

await build({
  entryPoints: [path.join(root, 'dist', 'cli', 'lxrctl.js')],
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
  logLevel: 'warning',
});
// A cache made for an older bundle would be rejected anyway; start afresh.
rmSync(out + '.cache', { force: true });
