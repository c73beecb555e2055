// expect: TS2339 Property 'todo' does not exist on type 'TodoDeleted'
import WebSocket from 'ws';
import { createClient } from '../src/todos.js';

const todos = createClient({ url: 'ws://127.0.0.1:9001', WebSocket }).channel('todos');

todos.subscribe('todos:updated', (event) => {
  console.log(event.todo.text);
});
