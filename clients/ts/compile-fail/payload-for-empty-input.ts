// expect: TS2322 Type 'true' is not assignable to type 'never'
import WebSocket from 'ws';
import { createClient } from '../src/todos.js';

const todos = createClient({ url: 'ws://127.0.0.1:9001', WebSocket }).channel('todos');

await todos.send('list', { all: true });
