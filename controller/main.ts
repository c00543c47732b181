// lxr-controller: cluster state, scheduling and the public API (issue #6).
// Until then it only reports its version.
const args = process.argv.slice(2);
if (args[0] === 'version' || args[0] === '--version') {
  process.stdout.write('lxr-controller 0.1.0\n');
} else {
  process.stderr.write('lxr-controller: the controller is not built yet (issue #6)\n');
  process.exitCode = 2;
}
