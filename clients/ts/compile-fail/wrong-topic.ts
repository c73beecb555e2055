// expect: TS2345 Argument of type '"todos:deleted"' is not assignable
import WebSocket from 'ws';
import { createClient } from '../src/todos.js';

const todos = createClient({ url: 'ws://127.0.0.1:9001', WebSocket }).channel('todos');

todos.subscribe('todos:deleted', () => {});
