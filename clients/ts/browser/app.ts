// The browser page's script: the generated client (compiled to JS) on the
// browser's own WebSocket. Query string: ?ws=ws://127.0.0.1:PORT&token=JWT.

import { createClient, isSwitchyardError, type Todo, type TodosUpdatedEvent } from '../src/todos.js';

const params = new URLSearchParams(location.search);
const $ = (id: string): HTMLElement => document.getElementById(id)!;

function item(text: string): HTMLLIElement {
  const li = document.createElement('li');
  li.textContent = text;
  return li;
}

function describe(todo: Todo): string {
  return `${todo.text} (#${todo.id} by ${todo.owner})`;
}

function describeEvent(e: TodosUpdatedEvent): string {
  return e.event === 'deleted' ? `deleted #${e.id}` : `${e.event}: ${describe(e.todo)}`;
}

const client = createClient({ url: params.get('ws') ?? 'ws://127.0.0.1:9001' });
const todos = client.channel('todos', {
  onOpen: async (c) => {
    const me = await c.send('auth', { token: params.get('token') ?? '' });
    $('user').textContent = me.userId;
  },
  topics: { 'todos:updated': { subscribe: { action: 'subscribe' } } },
  onStatus: (s) => {
    $('status').textContent = s;
    $('status').dataset['status'] = s;
  },
});

const subscription = todos.subscribe('todos:updated', (event) => {
  const li = item(describeEvent(event));
  li.className = 'event';
  $('events').append(li);
});

$('form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('text') as HTMLInputElement;
  const text = input.value;
  input.value = '';
  todos
    .send('create', { text })
    .then((reply) => {
      const li = item(describe(reply.todo));
      li.dataset['id'] = String(reply.todo.id);
      $('todos').append(li);
    })
    .catch((e: unknown) => {
      $('error').textContent = isSwitchyardError(e) ? `${e.code}: ${e.message}` : String(e);
    });
});

// Ready once authenticated and subscribed.
await subscription.ready;
const { todos: existing } = await todos.send('list');
for (const t of existing) $('todos').append(item(describe(t)));
document.body.dataset['ready'] = 'yes';
