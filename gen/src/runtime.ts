// ---------------------------------------------------------------------------
// Runtime: the same in every generated client. It needs nothing but a
// standard WebSocket (browsers and Node 22+ have one; on Node 20 pass the
// `ws` package's: `createClient({ url, WebSocket })`).
// ---------------------------------------------------------------------------

/** Error codes of PROTOCOL.md §3.2, the client's own, or a handler's. */
export type ErrorCode =
  | 'bad_json'
  | 'not_object'
  | 'missing_action'
  | 'unknown_action'
  | 'unauthorized'
  | 'forbidden'
  | 'invalid_input'
  | 'rate_limited'
  | 'timeout'
  | 'binary_not_supported'
  | 'internal'
  /** The client gave up waiting for the reply (`timeoutMs`). */
  | 'request_timeout'
  /** The connection dropped while the request was in flight. */
  | 'disconnected'
  /** The client was closed. */
  | 'closed'
  | (string & {});

/** An error reply from the server, or the client's own failure. */
export class SwitchyardError extends Error {
  /** `snake_case` code: the server's (`not_found`, `unauthorized`...) or the client's own (`request_timeout`, `disconnected`, `closed`). */
  readonly code: ErrorCode;
  /** The action of the request that failed, when known. */
  readonly action: string | undefined;
  /** The request's `rid`, when it had one. */
  readonly rid: number | undefined;
  constructor(code: ErrorCode, message: string, action?: string, rid?: number) {
    super(message);
    this.name = 'SwitchyardError';
    this.code = code;
    this.action = action;
    this.rid = rid;
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** Whether `e` is a {@link SwitchyardError}, with `code` when given. */
export function isSwitchyardError(e: unknown, code?: ErrorCode): e is SwitchyardError {
  return e instanceof SwitchyardError && (code === undefined || e.code === code);
}

/** Any WebSocket class: the browser's, Node 22's global one, or `ws`. */
export type WebSocketImpl = new (url: string) => object;

interface Socket {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

interface Timers {
  setTimeout(cb: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}
const timers = globalThis as unknown as Timers;

/** Reconnect with exponential backoff (on by default). */
export interface ReconnectOptions {
  /** First delay, in ms. Default 250. */
  initialDelayMs?: number;
  /** Longest delay, in ms. Default 10000. */
  maxDelayMs?: number;
  /** Each failed attempt multiplies the delay by this. Default 2. */
  factor?: number;
  /** Random spread, as a fraction of the delay. Default 0.2. */
  jitter?: number;
  /** Give up after this many failed attempts in a row. Default: never. */
  maxAttempts?: number;
}

/** Options of a whole client. */
export interface ClientOptions {
  /** The server, e.g. `ws://127.0.0.1:9001`; each channel's path is appended. */
  url: string;
  /** The WebSocket class; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketImpl;
  /** How long a request waits for its reply, in ms. Default 10000. */
  timeoutMs?: number;
  /** `false` turns reconnecting off. Default on. */
  reconnect?: boolean | ReconnectOptions;
}

/** Options of one request. */
export interface SendOptions {
  /** How long to wait for the reply, in ms (overrides the client's). */
  timeoutMs?: number;
}

/** Action name → input and output types. */
export type ActionMap = { [action: string]: { input: unknown; output: unknown } };
/** Topic name → event type. */
export type TopicMap = { [topic: string]: unknown };

/** `send`'s arguments after the action: the payload may be left out when it has no required member. */
export type SendArgs<I> = {} extends I
  ? [payload?: I, options?: SendOptions]
  : [payload: I, options?: SendOptions];

/** A request, as a channel's configuration names one. */
export type ActionCall<A extends ActionMap> = {
  [K in keyof A & string]: { action: K; payload?: A[K]['input'] };
}[keyof A & string];

/** How the server subscribes a connection to a topic (and unsubscribes it). */
export interface TopicActions<A extends ActionMap> {
  /** Sent when the first listener subscribes, and again after every reconnect. */
  subscribe?: ActionCall<A>;
  /** Sent when the last listener unsubscribes. */
  unsubscribe?: ActionCall<A>;
}

/** What a channel's `onOpen` gets: requests that go out before the channel is ready. */
export interface Sender<A extends ActionMap> {
  send<K extends keyof A & string>(action: K, ...args: SendArgs<A[K]['input']>): Promise<A[K]['output']>;
}

export type ChannelStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Options of one channel. */
export interface ChannelOptions<A extends ActionMap, T extends TopicMap> {
  /**
   * Runs on every (re)connect before any other request goes out: re-auth
   * here (`await c.send('auth', { token })`). Requests made meanwhile wait.
   */
  onOpen?: (channel: Sender<A>) => void | Promise<void>;
  /** Actions that subscribe the connection to each topic, re-sent after a reconnect. */
  topics?: { [K in keyof T]?: TopicActions<A> };
  /** Frames that are neither a reply nor an event (pushes, errors without `rid`). */
  onPush?: (message: Record<string, unknown>) => void;
  /** Status changes. */
  onStatus?: (status: ChannelStatus) => void;
  /** An `onOpen` or subscribe action that failed (default: `console.warn`). */
  onError?: (error: unknown) => void;
  /** Overrides the client's. */
  timeoutMs?: number;
  /** Overrides the client's. */
  reconnect?: boolean | ReconnectOptions;
  /** Overrides the URL built from the client's `url` and the channel's path. */
  url?: string;
}

/** Unsubscribes; `ready` settles when the subscribe action (if any) was answered. */
export type Unsubscribe = (() => void) & { ready: Promise<void> };

interface ChannelMeta {
  path: string;
  routingKey: string;
  /** Actions whose reply is not an object, so it comes as `{"result": value}`. */
  unwrap: readonly string[];
}

interface Pending {
  action: string;
  frame: string;
  sent: boolean;
  resolve: (value: unknown) => void;
  reject: (error: SwitchyardError) => void;
  timer: unknown;
}

const OPEN = 1;

/** One channel: its own WebSocket, requests matched by `rid`, topic listeners. */
export class Channel<A extends ActionMap, T extends TopicMap> implements Sender<A> {
  readonly name: string;
  readonly url: string;
  private readonly meta: ChannelMeta;
  private readonly impl: WebSocketImpl;
  private options: ChannelOptions<A, T>;
  private readonly timeoutMs: number;
  private readonly reconnect: Required<ReconnectOptions> | null;
  private socket: Socket | null = null;
  private generation = 0;
  private nextRid = 1;
  private attempts = 0;
  private isReady = false;
  private opened = false;
  private isClosed = false;
  private reconnectTimer: unknown = null;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Map<string, Set<(data: never) => void>>();
  private readonly topicReady = new Map<string, Promise<void>>();
  private readyWaiters: Array<{ resolve: () => void; reject: (e: SwitchyardError) => void }> = [];
  private currentStatus: ChannelStatus = 'connecting';
  private readonly direct: Sender<A>;

  constructor(name: string, meta: ChannelMeta, client: ClientOptions, options: ChannelOptions<A, T>) {
    this.name = name;
    this.meta = meta;
    this.options = options;
    this.url = options.url ?? joinUrl(client.url, meta.path);
    const impl = client.WebSocket ?? (globalThis as { WebSocket?: WebSocketImpl }).WebSocket;
    if (impl === undefined) {
      throw new Error(
        "switchyard: no global WebSocket; pass one, e.g. `import WebSocket from 'ws'; createClient({ url, WebSocket })`",
      );
    }
    this.impl = impl;
    this.timeoutMs = options.timeoutMs ?? client.timeoutMs ?? 10_000;
    const r = options.reconnect ?? client.reconnect ?? true;
    this.reconnect =
      r === false
        ? null
        : {
            initialDelayMs: 250,
            maxDelayMs: 10_000,
            factor: 2,
            jitter: 0.2,
            maxAttempts: Infinity,
            ...(r === true ? {} : r),
          };
    this.direct = {
      send: ((action: string, payload?: unknown, opts?: SendOptions) =>
        this.request(action, payload, opts, true)) as Sender<A>['send'],
    };
    this.connect();
  }

  /** The connection's state. */
  get status(): ChannelStatus {
    return this.currentStatus;
  }

  /**
   * Sends `action` with `payload` and resolves with the typed reply, or
   * rejects with a {@link SwitchyardError}.
   */
  send<K extends keyof A & string>(action: K, ...args: SendArgs<A[K]['input']>): Promise<A[K]['output']> {
    const [payload, opts] = args as [unknown, SendOptions | undefined];
    return this.request(action, payload, opts, false) as Promise<A[K]['output']>;
  }

  /**
   * Calls `listener` with every event on `topic`. When the channel's
   * options name a subscribe action for the topic, the first listener sends
   * it (and every reconnect sends it again).
   */
  subscribe<K extends keyof T & string>(topic: K, listener: (data: T[K]) => void): Unsubscribe {
    let set = this.listeners.get(topic);
    const first = set === undefined || set.size === 0;
    if (set === undefined) {
      set = new Set();
      this.listeners.set(topic, set);
    }
    const fn = listener as (data: never) => void;
    set.add(fn);
    let ready = this.topicReady.get(topic) ?? Promise.resolve();
    const actions = this.topicActions(topic);
    if (first && actions?.subscribe !== undefined) {
      // When not ready yet, the set-up after the connection opens sends it.
      ready = this.isReady ? this.runCall(actions.subscribe) : this.ready();
      this.topicReady.set(topic, ready);
      ready.catch((e: unknown) => {
        if (!isSwitchyardError(e, 'closed')) this.reportError(e);
      });
    }
    let active = true;
    const off = (): void => {
      if (!active) return;
      active = false;
      const s = this.listeners.get(topic);
      if (s === undefined) return;
      s.delete(fn);
      if (s.size === 0) {
        this.listeners.delete(topic);
        this.topicReady.delete(topic);
        const unsub = this.topicActions(topic)?.unsubscribe;
        if (unsub !== undefined && this.isReady) {
          this.runCall(unsub).catch((e: unknown) => this.reportError(e));
        }
      }
    };
    return Object.assign(off, { ready });
  }

  /** Resolves once the channel is open and `onOpen` has run. */
  ready(): Promise<void> {
    if (this.isClosed) return Promise.reject(new SwitchyardError('closed', 'the channel is closed'));
    if (this.isReady) return Promise.resolve();
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** Closes the connection for good; pending requests reject with `closed`. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.isReady = false;
    this.generation++;
    if (this.reconnectTimer !== null) timers.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket !== null) {
      detach(socket);
      try {
        socket.close(1000, 'client closed');
      } catch {
        // Already closing.
      }
    }
    this.failAll('closed', 'the channel was closed', () => true);
    for (const w of this.readyWaiters.splice(0)) w.reject(new SwitchyardError('closed', 'the channel was closed'));
    this.setStatus('closed');
  }

  private topicActions(topic: string): TopicActions<A> | undefined {
    const topics = this.options.topics as Record<string, TopicActions<A> | undefined> | undefined;
    return topics?.[topic];
  }

  private runCall(call: ActionCall<A> | undefined): Promise<void> {
    if (call === undefined) return Promise.resolve();
    return this.request(call.action, call.payload, undefined, true).then(() => undefined);
  }

  private request(action: string, payload: unknown, opts: SendOptions | undefined, direct: boolean): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.isClosed) {
        reject(new SwitchyardError('closed', 'the channel is closed', action));
        return;
      }
      if (direct && (this.socket === null || this.socket.readyState !== OPEN)) {
        reject(new SwitchyardError('disconnected', 'the connection is not open', action));
        return;
      }
      const rid = this.nextRid++;
      const frame = JSON.stringify({
        ...(isObject(payload) ? payload : {}),
        [this.meta.routingKey]: action,
        rid,
      });
      const ms = opts?.timeoutMs ?? this.timeoutMs;
      const p: Pending = {
        action,
        frame,
        sent: false,
        resolve,
        reject,
        timer: timers.setTimeout(() => {
          this.pending.delete(rid);
          reject(new SwitchyardError('request_timeout', `no reply to '${action}' within ${ms} ms`, action, rid));
        }, ms),
      };
      this.pending.set(rid, p);
      if (direct || this.isReady) this.transmit(p);
    });
  }

  private transmit(p: Pending): void {
    const socket = this.socket;
    if (socket === null || socket.readyState !== OPEN) return;
    try {
      socket.send(p.frame);
      p.sent = true;
    } catch {
      // The close event follows and rejects it.
    }
  }

  private connect(): void {
    const gen = ++this.generation;
    this.setStatus(this.opened ? 'reconnecting' : 'connecting');
    let socket: Socket;
    try {
      socket = new this.impl(this.url) as Socket;
    } catch (e) {
      this.reportError(e);
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (gen === this.generation) void this.setUp(gen);
    };
    socket.onmessage = (ev) => {
      if (gen === this.generation && typeof ev.data === 'string') this.onFrame(ev.data);
    };
    socket.onerror = () => {
      // A close event follows.
    };
    socket.onclose = () => {
      if (gen === this.generation) this.onDisconnect();
    };
  }

  /** On every open: `onOpen`, then the topics' subscribe actions, then the waiting requests. */
  private async setUp(gen: number): Promise<void> {
    try {
      if (this.options.onOpen !== undefined) await this.options.onOpen(this.direct);
      const done = new Set<string>();
      for (;;) {
        const topic = [...this.listeners.keys()].find((t) => !done.has(t));
        if (topic === undefined || gen !== this.generation) break;
        done.add(topic);
        await this.runCall(this.topicActions(topic)?.subscribe);
      }
    } catch (e) {
      if (gen !== this.generation) return;
      this.reportError(e);
    }
    if (gen !== this.generation) return;
    this.opened = true;
    this.attempts = 0;
    this.isReady = true;
    this.setStatus('open');
    for (const p of this.pending.values()) if (!p.sent) this.transmit(p);
    for (const w of this.readyWaiters.splice(0)) w.resolve();
  }

  private onDisconnect(): void {
    const socket = this.socket;
    if (socket !== null) detach(socket);
    this.socket = null;
    this.isReady = false;
    this.generation++;
    // Requests that went out may or may not have run: reject them. Those
    // still waiting to go out are sent after the reconnect.
    this.failAll('disconnected', 'the connection dropped before the reply came', (p) => p.sent);
    if (this.reconnect === null) {
      this.failAll('disconnected', 'the connection is closed', () => true);
      for (const w of this.readyWaiters.splice(0)) w.reject(new SwitchyardError('disconnected', 'the connection is closed'));
      this.isClosed = true;
      this.setStatus('closed');
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const r = this.reconnect;
    if (r === null || this.isClosed) return;
    if (this.attempts >= r.maxAttempts) {
      this.close();
      return;
    }
    const base = Math.min(r.maxDelayMs, r.initialDelayMs * Math.pow(r.factor, this.attempts));
    const delay = Math.max(0, base * (1 + r.jitter * (Math.random() * 2 - 1)));
    this.attempts++;
    this.setStatus('reconnecting');
    this.reconnectTimer = timers.setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.isClosed) this.connect();
    }, delay);
  }

  private onFrame(text: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (!isObject(msg)) return;
    const rid = msg['rid'];
    if (typeof msg['topic'] === 'string' && 'data' in msg && rid === undefined) {
      const set = this.listeners.get(msg['topic']);
      if (set !== undefined) {
        for (const fn of [...set]) {
          try {
            (fn as (data: unknown) => void)(msg['data']);
          } catch (e) {
            this.reportError(e);
          }
        }
      }
      return;
    }
    const p = typeof rid === 'number' ? this.pending.get(rid) : undefined;
    if (p === undefined || typeof rid !== 'number') {
      this.options.onPush?.(msg);
      return;
    }
    this.pending.delete(rid);
    timers.clearTimeout(p.timer);
    const error = msg['error'];
    if (isObject(error)) {
      const code = typeof error['code'] === 'string' ? error['code'] : 'internal';
      const message = typeof error['message'] === 'string' ? error['message'] : code;
      p.reject(new SwitchyardError(code, message, p.action, rid));
      return;
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(msg)) {
      if (k !== 'rid' && k !== this.meta.routingKey) out[k] = v;
    }
    p.resolve(this.meta.unwrap.includes(p.action) ? out['result'] : out);
  }

  private failAll(code: ErrorCode, message: string, which: (p: Pending) => boolean): void {
    for (const [rid, p] of [...this.pending]) {
      if (!which(p)) continue;
      this.pending.delete(rid);
      timers.clearTimeout(p.timer);
      p.reject(new SwitchyardError(code, message, p.action, rid));
    }
  }

  private setStatus(status: ChannelStatus): void {
    if (this.currentStatus === status) return;
    this.currentStatus = status;
    this.options.onStatus?.(status);
  }

  private reportError(e: unknown): void {
    if (this.options.onError !== undefined) this.options.onError(e);
    else (globalThis as { console?: { warn(...a: unknown[]): void } }).console?.warn('switchyard:', e);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function detach(socket: Socket): void {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onclose = null;
  socket.onerror = null;
}

function joinUrl(base: string, path: string): string {
  const trimmed = base.replace(/\/+$/, '');
  return trimmed.endsWith(path) ? trimmed : trimmed + path;
}

/** Channel name → its actions and topics. */
export type ChannelMap = { [channel: string]: { actions: ActionMap; topics: TopicMap } };

/** A client for every channel of the manifest; each channel opens its own connection on first use. */
export class BaseClient<C extends ChannelMap> {
  private readonly options: ClientOptions;
  private readonly metas: Record<string, ChannelMeta>;
  private readonly open = new Map<string, Channel<ActionMap, TopicMap>>();
  private isClosed = false;

  protected constructor(options: ClientOptions, metas: Record<string, ChannelMeta>) {
    this.options = options;
    this.metas = metas;
  }

  /**
   * The channel `name`, connected on first use. Options given on the first
   * call configure it; a later call with options is an error.
   */
  channel<N extends keyof C & string>(
    name: N,
    options?: ChannelOptions<C[N]['actions'], C[N]['topics']>,
  ): Channel<C[N]['actions'], C[N]['topics']> {
    const existing = this.open.get(name);
    if (this.isClosed && existing === undefined) throw new Error('switchyard: the client is closed');
    if (existing !== undefined) {
      if (options !== undefined) throw new Error(`switchyard: channel '${name}' is already open; pass its options on the first call`);
      return existing as unknown as Channel<C[N]['actions'], C[N]['topics']>;
    }
    const meta = this.metas[name];
    if (meta === undefined) throw new Error(`switchyard: no channel '${name}'`);
    const ch = new Channel<C[N]['actions'], C[N]['topics']>(name, meta, this.options, options ?? {});
    this.open.set(name, ch as unknown as Channel<ActionMap, TopicMap>);
    return ch;
  }

  /** Closes every channel; their requests then reject with `closed`. */
  close(): void {
    this.isClosed = true;
    for (const ch of this.open.values()) ch.close();
  }
}
