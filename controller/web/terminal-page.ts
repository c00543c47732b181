// The web terminal's page: xterm.js (served from the controller, no CDN)
// on a WebSocket to a durable exec session. The session id is kept in the
// tab's sessionStorage: a refresh attaches to the same shell and replays
// what it printed, instead of starting another.
const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function terminalPage(workspace: string): string {
  const ws = escapeHtml(workspace);
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${ws} — LXR terminal</title>
<link rel="stylesheet" href="assets/xterm.css">
<style>html,body{margin:0;height:100%;background:#1e1e1e}#term{height:100%}</style>
</head><body><div id="term" data-workspace="${ws}"></div>
<script type="module">
import { Terminal } from './assets/xterm.mjs';
import { FitAddon } from './assets/addon-fit.mjs';
const key = 'lxr-session:' + location.pathname;
const term = new Terminal({ cursorBlink: true, scrollback: 5000 });
const fit = new FitAddon();
term.loadAddon(fit);
term.open(document.getElementById('term'));
fit.fit();
const session = sessionStorage.getItem(key);
const url = new URL('terminal/ws', location.href);
url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
url.searchParams.set('rows', term.rows);
url.searchParams.set('cols', term.cols);
if (session) url.searchParams.set('session', session);
const sock = new WebSocket(url);
sock.binaryType = 'arraybuffer';
sock.onmessage = (ev) => {
  if (typeof ev.data !== 'string') return term.write(new Uint8Array(ev.data));
  const m = JSON.parse(ev.data);
  if (m.type === 'session') { sessionStorage.setItem(key, m.id); document.body.dataset.session = m.id; }
  if (m.type === 'exit') { sessionStorage.removeItem(key); term.write('\\r\\n[the shell ended: ' + m.code + ']\\r\\n'); }
  if (m.type === 'error') { sessionStorage.removeItem(key); term.write('\\r\\n[' + m.message + ']\\r\\n'); }
};
sock.onopen = () => { document.body.dataset.connected = 'yes'; };
term.onData((d) => sock.readyState === 1 && sock.send(JSON.stringify({ type: 'input', data: d })));
term.onResize(({ rows, cols }) => sock.readyState === 1 && sock.send(JSON.stringify({ type: 'resize', rows, cols })));
addEventListener('resize', () => fit.fit());
</script></body></html>
`;
}
