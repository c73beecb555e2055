// expect: TS2551 Property 'todos' does not exist on type 'TodosCreateOutput'
import WebSocket from 'ws';
import { createClient } from '../src/todos.js';

const todos = createClient({ url: 'ws://127.0.0.1:9001', WebSocket }).channel('todos');

const reply = await todos.send('create', { text: 'Buy milk' });
void reply.todos;
