// The same calls, written correctly: this file must compile, so the
// compile-fail files fail for the reason they name and nothing else.
import WebSocket from 'ws';
import { createClient, type Todo, type TodosUpdatedEvent } from '../src/todos.js';

const client = createClient({ url: 'ws://127.0.0.1:9001', WebSocket });
const todos = client.channel('todos', {
  onOpen: async (c) => {
    await c.send('auth', { token: 'x' });
  },
  topics: { 'todos:updated': { subscribe: { action: 'subscribe' } } },
});
const reply = await todos.send('create', { text: 'Buy milk' });
const todo: Todo = reply.todo;
const id: number = reply.todo.id;
await todos.send('list');
await todos.send('list', {});
await todos.send('toggle', { id }, { timeoutMs: 500 });
const off = todos.subscribe('todos:updated', (event: TodosUpdatedEvent) => {
  if (event.event === 'deleted') {
    const gone: number = event.id;
    void gone;
  } else {
    const text: string = event.todo.text;
    void text;
  }
});
off();
void todo;
client.close();
