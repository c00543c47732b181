// Where the agent finds its native helpers (native/build/ of this checkout,
// found upwards from the running module: dist/agent/... or agent/...), unless
// an environment variable names one.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The helper's path: $env, else native/build/NAME of this checkout, else null. */
export function findNativeBinary(name: string, env: string): string | null {
  if (process.env[env]) return process.env[env]!;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'native', 'build', name);
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  return null;
}
