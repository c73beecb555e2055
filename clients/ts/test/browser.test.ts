// The generated client in a real browser: Debian's headless Chromium,
// driven by playwright-core, loads a page (served by a tiny static server
// on 127.0.0.1:0) that signs in, subscribes and creates a todo; another
// connection (from Node) creates one too, and the page shows its event.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';

import { createClient } from '../src/todos.js';
import { ROOT, token, TodosServer } from './helpers.js';

const CHROMIUM = process.env['CHROMIUM'] ?? '/usr/bin/chromium';
const TS_DIR = resolve(ROOT, 'clients/ts');
const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript' };

/** Serves browser/index.html at / and the compiled dist/ files. */
async function staticServer(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const file = path === '/' ? join(TS_DIR, 'browser/index.html') : resolve(TS_DIR, `.${path}`);
    if (!file.startsWith(join(TS_DIR, 'dist')) && !file.endsWith('index.html')) {
      res.writeHead(404).end();
      return;
    }
    if (!existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  return { server, url: `http://127.0.0.1:${addr.port}` };
}

test('in Chromium: auth, create, and an event from another connection', { timeout: 90_000 }, async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
  const todos = await TodosServer.start();
  const { server: http, url } = await staticServer();
  const profile = mkdtempSync(join(tmpdir(), 'switchyard-chromium-'));
  const artifacts = process.env['SWITCHYARD_ARTIFACTS'] ?? join(tmpdir(), 'switchyard-artifacts');
  mkdirSync(artifacts, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30_000,
  });
  const bob = createClient({ url: todos.url, WebSocket });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const logs: string[] = [];
    page.on('console', (m) => logs.push(m.text()));
    page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
    const query = new URLSearchParams({ ws: todos.url, token: token('alice') });
    await page.goto(`${url}/?${query}`, { timeout: 15_000 });
    await page.waitForSelector('body[data-ready="yes"]', { timeout: 15_000 }).catch((e: unknown) => {
      throw new Error(`the page never got ready: ${String(e)}\n${logs.join('\n')}`);
    });
    assert.equal(await page.textContent('#user'), 'alice');
    assert.equal(await page.textContent('#status'), 'open');

    // The page creates a todo and shows the awaited reply.
    await page.fill('#text', 'Buy milk');
    await page.click('#add');
    await page.waitForSelector('#todos li[data-id="1"]', { timeout: 10_000 });
    assert.equal(await page.textContent('#todos li[data-id="1"]'), 'Buy milk (#1 by alice)');

    // Another connection creates one; the page shows the event.
    const b = bob.channel('todos');
    await b.send('auth', { token: token('bob') });
    await b.send('create', { text: 'Walk the dog' });
    await page.waitForFunction(() => document.querySelectorAll('#events li').length >= 2, undefined, {
      timeout: 10_000,
    });
    const events = await page.$$eval('#events li', (lis) => lis.map((li) => li.textContent));
    assert.deepEqual(events, ['created: Buy milk (#1 by alice)', 'created: Walk the dog (#2 by bob)']);
    assert.equal(await page.textContent('#error'), '');

    // An error code surfaces in the page: an empty todo is invalid input.
    await page.fill('#text', '');
    await page.click('#add');
    await page.waitForFunction(() => document.getElementById('error')!.textContent !== '', undefined, {
      timeout: 10_000,
    });
    assert.match((await page.textContent('#error')) ?? '', /^invalid_input: /);

    const shot = join(artifacts, 'browser-todos.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
  } finally {
    bob.close();
    await context.close();
    http.close();
    await todos.stop();
    rmSync(profile, { recursive: true, force: true });
  }
});
