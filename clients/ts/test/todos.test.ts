// The generated TypeScript client (src/todos.ts) against the running Rust
// todos example, in Node 20+ with the `ws` package as its WebSocket.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';

import {
  createClient,
  isSwitchyardError,
  SwitchyardError,
  type ChannelStatus,
  type Todo,
  type TodosCreateOutput,
  type TodosUpdatedEvent,
} from '../src/todos.js';
import { Inbox, token, TodosServer, waitFor } from './helpers.js';

const FAST_RECONNECT = { initialDelayMs: 50, maxDelayMs: 300 };

/** Expects `p` to reject with a SwitchyardError of `code`; returns it. */
async function rejectsWith(p: Promise<unknown>, code: string): Promise<SwitchyardError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof SwitchyardError, `expected a SwitchyardError, got ${String(e)}`);
    assert.equal(e.code, code, `code of ${e.message}`);
    return e;
  }
  assert.fail(`expected a '${code}' error, but the request succeeded`);
}

test('auth, then create awaits the typed reply, matched by rid', { timeout: 30_000 }, async () => {
  const server = await TodosServer.start();
  const client = createClient({ url: server.url, WebSocket });
  try {
    const todos = client.channel('todos');
    const who = await todos.send('whoami');
    assert.deepEqual(who, { userId: null });
    const auth = await todos.send('auth', { token: token('alice') });
    assert.deepEqual(auth, { ok: true, userId: 'alice' });

    const reply: TodosCreateOutput = await todos.send('create', { text: 'Buy milk' });
    const todo: Todo = reply.todo;
    assert.deepEqual(todo, { id: 1, text: 'Buy milk', done: false, owner: 'alice' });

    // Concurrent requests of the same action each get their own reply.
    const texts = Array.from({ length: 20 }, (_, i) => `item ${i}`);
    const replies = await Promise.all(texts.map((text) => todos.send('create', { text })));
    assert.deepEqual(
      replies.map((r) => r.todo.text),
      texts,
    );
    const toggled = await todos.send('toggle', { id: 1 });
    assert.equal(toggled.todo.done, true);
    const list = await todos.send('list');
    assert.equal(list.todos.length, 21);
    assert.deepEqual(await todos.send('delete', { id: 2 }), { deleted: 2 });
    assert.deepEqual(await todos.send('logout'), { ok: true });
    assert.deepEqual(await todos.send('whoami', {}), { userId: null });
  } finally {
    client.close();
    await server.stop();
  }
});

test('errors reject with a typed SwitchyardError carrying the code', { timeout: 30_000 }, async () => {
  const server = await TodosServer.start();
  const client = createClient({ url: server.url, WebSocket });
  try {
    const todos = client.channel('todos');
    const e = await rejectsWith(todos.send('create', { text: 'x' }), 'unauthorized');
    assert.equal(e.action, 'create');
    assert.equal(typeof e.rid, 'number');
    assert.ok(isSwitchyardError(e, 'unauthorized'));
    await rejectsWith(todos.send('auth', { token: 'not-a-jwt' }), 'invalid_token');
    await rejectsWith(todos.send('auth', { token: token('alice', -60) }), 'invalid_token');
    await todos.send('auth', { token: token('alice') });
    const bad = await rejectsWith(todos.send('create', { text: '' }), 'invalid_input');
    assert.match(bad.message, /text/);
    await rejectsWith(todos.send('toggle', { id: 999 }), 'not_found');
    await rejectsWith(todos.send('delete', { id: 999 }), 'not_found');
    // The connection is still fine after errors.
    assert.equal((await todos.send('create', { text: 'still here' })).todo.id, 1);

    // No reply in time: the client's own timeout.
    await server.pause();
    try {
      const t = await rejectsWith(todos.send('list', undefined, { timeoutMs: 300 }), 'request_timeout');
      assert.equal(t.action, 'list');
    } finally {
      server.resume();
    }
    // The late reply to the timed-out request is ignored; the next one works.
    assert.equal((await todos.send('list')).todos.length, 1);
  } finally {
    client.close();
    await server.stop();
  }
  // After close, requests reject with `closed`.
  await rejectsWith(client.channel('todos').send('whoami'), 'closed');
});

test('events from another connection reach subscribe() listeners, typed', { timeout: 30_000 }, async () => {
  const server = await TodosServer.start();
  const alice = createClient({ url: server.url, WebSocket });
  const bob = createClient({ url: `${server.url}/todos`, WebSocket });
  try {
    const a = alice.channel('todos', {
      onOpen: async (c) => {
        await c.send('auth', { token: token('alice') });
      },
      topics: { 'todos:updated': { subscribe: { action: 'subscribe' }, unsubscribe: { action: 'unsubscribe' } } },
    });
    const inbox = new Inbox<TodosUpdatedEvent>();
    const off = a.subscribe('todos:updated', inbox.push);
    await off.ready;

    const b = bob.channel('todos', { onOpen: (c) => c.send('auth', { token: token('bob') }).then(() => {}) });
    const created = await b.send('create', { text: 'from bob' });
    const ev1 = await inbox.next();
    assert.deepEqual(ev1, { event: 'created', todo: created.todo });
    if (ev1.event === 'created') assert.equal(ev1.todo.owner, 'bob');

    await b.send('toggle', { id: created.todo.id });
    const ev2 = await inbox.next();
    assert.ok(ev2.event === 'updated', `an update, not ${ev2.event}`);
    assert.equal(ev2.todo.done, true);

    await b.send('delete', { id: created.todo.id });
    assert.deepEqual(await inbox.next(), { event: 'deleted', id: created.todo.id });

    // A second listener on the same topic sends no second subscribe; both get events.
    const second = new Inbox<TodosUpdatedEvent>();
    const off2 = a.subscribe('todos:updated', second.push);
    await b.send('create', { text: 'two listeners' });
    assert.equal((await inbox.next()).event, 'created');
    assert.equal((await second.next()).event, 'created');

    // Unsubscribing the last listener sends the unsubscribe action: no more events.
    off();
    off2();
    await a.send('whoami'); // the unsubscribe went out before this
    await b.send('create', { text: 'nobody listens' });
    await a.send('whoami');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(inbox.size + second.size, 0);
  } finally {
    alice.close();
    bob.close();
    await server.stop();
  }
});

test('server restart: reconnect, re-auth and re-subscribe; in-flight requests reject', { timeout: 60_000 }, async () => {
  let server = await TodosServer.start();
  const port = server.port;
  const statuses: ChannelStatus[] = [];
  let opens = 0;
  const alice = createClient({ url: server.url, WebSocket, reconnect: FAST_RECONNECT });
  const a = alice.channel('todos', {
    onOpen: async (c) => {
      opens++;
      await c.send('auth', { token: token('alice') });
    },
    topics: { 'todos:updated': { subscribe: { action: 'subscribe' } } },
    onStatus: (s) => statuses.push(s),
    onError: () => {},
  });
  const inbox = new Inbox<TodosUpdatedEvent>();
  const off = a.subscribe('todos:updated', inbox.push);
  try {
    await off.ready;
    assert.equal(opens, 1);
    await a.send('create', { text: 'before' });
    assert.equal((await inbox.next()).event, 'created');

    // A request in flight when the server dies is rejected with `disconnected`.
    await server.pause();
    const inFlight = a.send('list');
    await new Promise((r) => setTimeout(r, 100));
    server.proc.kill('SIGKILL');
    await rejectsWith(inFlight, 'disconnected');
    await server.stop('SIGKILL');
    await waitFor(() => a.status === 'reconnecting', 5_000, 'the channel to notice');

    // A request made while disconnected waits for the reconnect.
    const queued = a.send('whoami', {}, { timeoutMs: 20_000 });

    server = await TodosServer.start(port);
    assert.deepEqual(await queued, { userId: 'alice' }); // re-authenticated by onOpen
    assert.equal(opens, 2);
    await a.ready();

    // Re-subscribed: an event from another connection arrives.
    const bob = createClient({ url: server.url, WebSocket });
    try {
      const b = bob.channel('todos');
      await b.send('auth', { token: token('bob') });
      const made = await b.send('create', { text: 'after the restart' });
      assert.equal(made.todo.id, 1); // a new server: its state starts again
      assert.deepEqual(await inbox.next(), { event: 'created', todo: made.todo });
    } finally {
      bob.close();
    }
    assert.deepEqual(statuses.slice(0, 2), ['open', 'reconnecting']);
    assert.equal(statuses.at(-1), 'open');
  } finally {
    alice.close();
    await server.stop();
  }
});

test('without reconnect, a dropped connection closes the channel', { timeout: 30_000 }, async () => {
  const server = await TodosServer.start();
  const client = createClient({ url: server.url, WebSocket, reconnect: false });
  const todos = client.channel('todos');
  try {
    await todos.ready();
    await server.stop();
    await waitFor(() => todos.status === 'closed', 5_000, 'the channel to close');
    await rejectsWith(todos.send('whoami'), 'closed');
  } finally {
    client.close();
  }
});
