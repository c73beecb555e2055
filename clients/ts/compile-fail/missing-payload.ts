// expect: TS2554 Expected 2-3 arguments, but got 1
import WebSocket from 'ws';
import { createClient } from '../src/todos.js';

const todos = createClient({ url: 'ws://127.0.0.1:9001', WebSocket }).channel('todos');

await todos.send('create');
