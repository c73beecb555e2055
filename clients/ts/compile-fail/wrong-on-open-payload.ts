// expect: TS2353 Object literal may only specify known properties, and 'tok' does not exist
import WebSocket from 'ws';
import { createClient } from '../src/todos.js';


createClient({ url: 'ws://127.0.0.1:9001', WebSocket }).channel('todos', {
  onOpen: async (c) => {
    await c.send('auth', { tok: 'x' });
  },
});
