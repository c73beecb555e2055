// expect: TS2353 Object literal may only specify known properties, and 'done' does not exist
import WebSocket from 'ws';
import { createClient } from '../src/todos.js';

const todos = createClient({ url: 'ws://127.0.0.1:9001', WebSocket }).channel('todos');

await todos.send('create', { text: 'Buy milk', done: true });
