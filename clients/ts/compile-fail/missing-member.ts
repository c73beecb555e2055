// expect: TS2345 Property 'text' is missing
import WebSocket from 'ws';
import { createClient } from '../src/todos.js';

const todos = createClient({ url: 'ws://127.0.0.1:9001', WebSocket }).channel('todos');

await todos.send('create', {});
