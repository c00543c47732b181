// The lxrctl executable: runs the CLI (cli/main.ts) in this process.
import { run } from './main.js';

run();
