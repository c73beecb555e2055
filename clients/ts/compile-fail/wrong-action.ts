// expect: TS2345 Argument of type '"creat"' is not assignable
import WebSocket from 'ws';
import { createClient } from '../src/todos.js';

const todos = createClient({ url: 'ws://127.0.0.1:9001', WebSocket }).channel('todos');

await todos.send('creat', { text: 'Buy milk' });
