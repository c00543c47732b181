// lxrctl: the CLI over the controller's API (issue #7). Until then it only
// reports its version.
const args = process.argv.slice(2);
if (args[0] === 'version' || args[0] === '--version') {
  process.stdout.write('lxrctl 0.1.0\n');
} else {
  process.stderr.write('lxrctl: not built yet (issue #7); lxr-runtime runs containers today\n');
  process.exitCode = 2;
}
