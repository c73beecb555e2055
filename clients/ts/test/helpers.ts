// Shared by the Node and browser tests: run the Rust todos example, make
// tokens, wait for things with a bounded timeout.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs from clients/ts/dist/test/). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

/** The todos example's binary: $SWITCHYARD_TODOS_BIN, else target/debug/examples/todos. */
export function todosBinary(): string {
  const bin = process.env['SWITCHYARD_TODOS_BIN'] ?? resolve(ROOT, 'target/debug/examples/todos');
  if (!existsSync(bin)) {
    throw new Error(`${bin} does not exist: run \`cargo build -p switchyard --example todos\` (scripts/test-clients does)`);
  }
  return bin;
}

const SECRET = 'switchyard-dev-secret';

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

/** An HS256 JWT for `sub`, signed with the example's default secret. */
export function token(sub: string, expiresInS = 3600): string {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + expiresInS }));
  const sig = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** A running todos example. */
export class TodosServer {
  readonly port: number;
  readonly proc: ChildProcess;
  private readonly exited: Promise<void>;

  private constructor(proc: ChildProcess, port: number, exited: Promise<void>) {
    this.proc = proc;
    this.port = port;
    this.exited = exited;
  }

  /** The base URL for clients, e.g. `ws://127.0.0.1:40123`. */
  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Starts the example on `127.0.0.1:port` (0: a free port) and waits for its first line. */
  static async start(port = 0): Promise<TodosServer> {
    const proc = spawn(todosBinary(), ['--addr', `127.0.0.1:${port}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SWITCHYARD_ADDR: '', SWITCHYARD_JWT_SECRET: SECRET },
    });
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<void>((res) => proc.once('exit', () => res()));
    const lines = createInterface({ input: proc.stdout! });
    const first = await withTimeout(
      new Promise<string>((res, rej) => {
        lines.once('line', res);
        proc.once('exit', (code) => rej(new Error(`todos exited with ${code}: ${stderr}`)));
      }),
      20_000,
      'the todos example to print its address',
    );
    const m = /^listening on ws:\/\/127\.0\.0\.1:(\d+)\/todos$/.exec(first);
    if (m === null) throw new Error(`unexpected first line ${JSON.stringify(first)}`);
    return new TodosServer(proc, Number(m[1]), exited);
  }

  /** Sends `signal` and waits (bounded) for the process to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    await withTimeout(this.exited, 10_000, 'the todos example to exit');
  }

  /**
   * Freezes the process (its sockets stay open, nothing is answered), and
   * waits until the kernel shows it stopped.
   */
  async pause(): Promise<void> {
    this.proc.kill('SIGSTOP');
    const stat = `/proc/${this.proc.pid}/stat`;
    // The state is the field after the parenthesised command name.
    await waitFor(() => / T /.test(readFileSync(stat, 'utf8').replace(/^.*\)/s, ')')), 5_000, 'the server to stop');
  }

  resume(): void {
    this.proc.kill('SIGCONT');
  }
}

/** `p`, or a rejection naming `what` after `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}

/** Polls `cond` every 20 ms until it holds, for at most `ms`. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Collects values; `next()` waits (bounded) for the next one. */
export class Inbox<T> {
  private readonly items: T[] = [];
  private waiters: Array<(v: T) => void> = [];

  push = (v: T): void => {
    const w = this.waiters.shift();
    if (w !== undefined) w(v);
    else this.items.push(v);
  };

  next(ms = 5_000): Promise<T> {
    const v = this.items.shift();
    if (v !== undefined) return Promise.resolve(v);
    return withTimeout(new Promise<T>((res) => this.waiters.push(res)), ms, 'an event');
  }

  get size(): number {
    return this.items.length;
  }
}
