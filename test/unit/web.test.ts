// The browser side's pure parts: signed links and cookies (one workspace,
// one purpose, unaltered, unexpired), the terminal page's escaping, and
// idle activity. The pages themselves run in Chromium in
// test/integration/web-terminal.test.ts.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { terminalPage } from '../../controller/web/terminal-page.js';
import { WebLinks } from '../../controller/web/web-links.js';
import { tempDir } from '../helpers/tmp.js';

describe('web links', () => {
  const links = WebLinks.withKey(Buffer.alloc(32, 7));
  const now = Date.UTC(2026, 10, 23, 12);

  it('a link is good for its workspace and purpose until it expires', () => {
    const t = links.sign('link', 'ws1', 300, now);
    assert.match(t, /^\d+\.[A-Za-z0-9_-]{43}$/);
    assert.equal(links.check(t, 'link', 'ws1', now + 299_000), null);
    assert.match(links.check(t, 'link', 'ws1', now + 301_000) ?? '', /the link expired at 2026-11-23T12:05:00\.000Z: lxrctl open ws1 makes a new one/);
    assert.match(links.check(t, 'link', 'ws2', now) ?? '', /not for workspace ws2/);
    assert.match(links.check(t, 'cookie', 'ws1', now) ?? '', /not for workspace ws1 \(or was altered\)/, 'a link is not a cookie');
    const later = t.replace(/^(\d+)/, (e) => String(Number(e) + 3600));
    assert.match(links.check(later, 'link', 'ws1', now) ?? '', /or was altered/, 'the expiry is signed');
    assert.equal(WebLinks.withKey(Buffer.alloc(32, 8)).check(t, 'link', 'ws1', now)?.includes('not for workspace'), true, 'another key');
    for (const bad of ['', 'x', '123.', '123.abc', `${t}x`, `-1.${t.split('.')[1]}`]) assert.ok(links.check(bad, 'link', 'ws1', now), JSON.stringify(bad));
    assert.equal(links.check(undefined, 'cookie', 'ws1', now), 'no link or credential came');
  });

  it('the key is made once, 0600, and kept: links survive a restart', async () => {
    const dir = path.join(await tempDir('weblinks'), 'pki');
    const a = WebLinks.open(dir);
    const t = a.sign('link', 'ws1', 300);
    assert.equal(statSync(path.join(dir, 'web-link.key')).mode & 0o777, 0o600);
    assert.equal(WebLinks.open(dir).check(t, 'link', 'ws1'), null);
    assert.equal(readFileSync(path.join(dir, 'web-link.key'), 'utf8').length, 64);
  });
});

describe('the terminal page', () => {
  it('names the workspace escaped, and loads xterm.js from the controller only', () => {
    const html = terminalPage('ws1');
    assert.match(html, /<title>ws1 — LXR terminal<\/title>/);
    assert.match(html, /from '\.\/assets\/xterm\.mjs'/);
    assert.doesNotMatch(html, /https?:\/\//, 'no CDN');
    assert.doesNotMatch(terminalPage('<x>"'), /<x>"/);
  });
});

describe('activity (idle detection)', () => {
  it('the last thing a person did, never before the workspace\'s start or the controller\'s', async () => {
    const { Activity } = await import('../../controller/workspaces/activity.js');
    let now = 1_000_000;
    const a = new Activity(() => now);
    const before = new Date(now - 60_000).toISOString();
    assert.deepEqual(a.of('ws1', before), { at: 1_000_000, kind: 'controller started' }, 'started before this controller');
    now += 5000;
    const startedAt = new Date(now).toISOString();
    assert.deepEqual(a.of('ws1', startedAt), { at: now, kind: 'started' });
    now += 5000;
    a.touch('ws1', 'exec input');
    assert.deepEqual(a.of('ws1', startedAt), { at: now, kind: 'exec input' });
    assert.deepEqual(a.of('ws2', startedAt), { at: now - 5000, kind: 'started' }, 'per workspace');
    // Started again later: activity from before that start does not count.
    now += 5000;
    assert.deepEqual(a.of('ws1', new Date(now).toISOString()), { at: now, kind: 'started' });
    a.forget('ws1');
    assert.deepEqual(a.of('ws1', startedAt), { at: now - 10_000, kind: 'started' });
  });
});
