// expect: TS2322 Type 'number' is not assignable to type 'string'
import WebSocket from 'ws';
import { createClient } from '../src/todos.js';

const todos = createClient({ url: 'ws://127.0.0.1:9001', WebSocket }).channel('todos');

await todos.send('create', { text: 42 });
