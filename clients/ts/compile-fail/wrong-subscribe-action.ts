// expect: TS2820 Type '"subscrib"' is not assignable
import WebSocket from 'ws';
import { createClient } from '../src/todos.js';


createClient({ url: 'ws://127.0.0.1:9001', WebSocket }).channel('todos', {
  topics: { 'todos:updated': { subscribe: { action: 'subscrib' } } },
});
