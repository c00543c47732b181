// lxr-agent: the per-host daemon. Its gRPC API (images, containers, exec,
// logs, stats, events) is issue #4; until then it only reports its version,
// so nothing pretends to serve.
const args = process.argv.slice(2);
if (args[0] === 'version' || args[0] === '--version') {
  process.stdout.write('lxr-agent 0.1.0\n');
} else {
  process.stderr.write('lxr-agent: the agent API is not built yet (issue #4); use lxr-runtime for containers today\n');
  process.exitCode = 2;
}
