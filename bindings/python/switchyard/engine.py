"""The asyncio host: channels and their actions, the completion-queue drain,
contexts, middleware and replies.

In: events drained from the engine's completion queue, one
``switchyard_cq_drain`` per wake-up of the notification fd
(``loop.add_reader``). Out: replies through ``switchyard_reply_batch``
(one call per drain for synchronous results; results of suspended
``async`` handlers are coalesced into one call per loop iteration), and
session changes, subscriptions, pushes, publishes and closes through the
engine's host-thread calls.

Invariants:

- Every ``switchyard_*`` call happens on the event loop's thread, except
  ``switchyard_engine_stop`` (run in an executor so the loop keeps going).
- Replies waiting for a batch are sent before any other engine call
  (``ctx.send``, ``ctx.publish``, ``ctx.set_session``...), so the frames of
  one connection leave in the order the handlers produced them, exactly as
  if every reply had been sent at once.
- A request is answered once: a handler's result, its ``SwitchyardError``,
  or ``internal`` for anything else. A cancelled request (its connection
  closed, or the engine stopped) is not answered; its task is cancelled and
  ``ctx.cancelled`` is set.
- Session changes go to the engine before the reply. A route whose handler
  changes the session must be exclusive so the connection's next message
  waits for it; public routes (``auth=False``) are exclusive unless told
  otherwise, and a session change from a non-exclusive route logs a
  warning once per route.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import struct
import sys
import types
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Generator,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import _native as n
from ._native import ffi
from .errors import EngineError, SwitchyardError

log = logging.getLogger("switchyard")

#: Any JSON value, as ``json.loads`` returns it.
Json = Any
#: ``handler(ctx, data)``: returns the reply (a value, or ``None`` for an
#: acknowledgement), or an awaitable of it.
Handler = Callable[["Context", Json], Any]
#: ``await next()`` (or ``await next(data)``) runs the rest of the onion.
Next = Callable[..., Awaitable[Json]]
#: ``async def middleware(ctx, data, next)``: returns the reply.
Middleware = Callable[["Context", Json, Next], Awaitable[Json]]
#: Channel middleware on pushes: returns the message (possibly replaced),
#: ``None`` to drop it, or a list to send several.
Outbound = Callable[["Context", Json], Union[None, Json, List[Json]]]
#: ``hook(ctx)`` on connect and disconnect; may be ``async``.
Hook = Callable[["Context"], Any]
#: ``on_message(ctx, text)`` for text no route takes (bytes for binary).
MessageHook = Callable[["Context", Any], Any]

_std_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _std_dumps(value: Json) -> bytes:
    return _std_encode(value).encode("utf-8")


_std_loads = json.loads

# JSON: orjson when it is installed (`pip install switchyard[orjson]`; about
# ten times faster here on small messages), else the standard library.
# SWITCHYARD_JSON=stdlib forces the standard library. What orjson cannot
# take (integers past 64 bits) falls back to the standard library; one
# difference remains: orjson writes NaN and infinities as null, where the
# standard library refuses them (an `internal` error).
JSON_BACKEND = "stdlib"
_dumps: Callable[[Json], bytes] = _std_dumps
_loads: Callable[[bytes], Json] = _std_loads
if os.environ.get("SWITCHYARD_JSON", "") != "stdlib":
    try:
        import orjson as _orjson
    except ImportError:  # pragma: no cover - depends on the environment
        pass
    else:
        _or_dumps = _orjson.dumps
        _or_loads = _orjson.loads
        _OR_OPTS = _orjson.OPT_NON_STR_KEYS

        def _fast_dumps(value: Json) -> bytes:
            try:
                return _or_dumps(value, option=_OR_OPTS)
            except TypeError:
                return _std_dumps(value)

        def _fast_loads(data: bytes) -> Json:
            try:
                return _or_loads(data)
            except ValueError:
                return _std_loads(data)

        _dumps = _fast_dumps
        _loads = _fast_loads
        JSON_BACKEND = "orjson"
# ffi.unpack is a Python-level wrapper around this backend call.
_unpack: Callable[[Any, int], bytes] = getattr(getattr(ffi, "_backend", None), "unpack", None) or ffi.unpack  # type: ignore[assignment]
_from_buffer = ffi.from_buffer
_CoroutineType = types.CoroutineType
# Results that cannot be awaitables: no need to ask.
_PLAIN = frozenset({dict, list, str, int, float, bool, type(None), tuple})
_EAGER_312 = sys.version_info >= (3, 12)

_CONFIG_FIELDS: Dict[str, str] = {
    "threads": "switchyard_config_set_threads",
    "max_message_bytes": "switchyard_config_set_max_message_bytes",
    "max_inflight_per_connection": "switchyard_config_set_max_inflight_per_connection",
    "max_outbox_bytes": "switchyard_config_set_max_outbox_bytes",
    "max_handshake_bytes": "switchyard_config_set_max_handshake_bytes",
    "max_connections": "switchyard_config_set_max_connections",
    "idle_timeout_ms": "switchyard_config_set_idle_timeout_ms",
    "handshake_timeout_ms": "switchyard_config_set_handshake_timeout_ms",
    "reply_timeout_ms": "switchyard_config_set_reply_timeout_ms",
    "close_timeout_ms": "switchyard_config_set_close_timeout_ms",
    "backlog": "switchyard_config_set_backlog",
    "metrics": "switchyard_config_set_metrics",
    "debug": "switchyard_config_set_debug",
    "serve_manifest": "switchyard_config_set_serve_manifest",
}

_RATE_SCOPES = {
    "connection": n.RATE_PER_CONNECTION,
    "connection_route": n.RATE_PER_CONNECTION_ROUTE,
    "shared": n.RATE_SHARED,
}

_Reply = Tuple[int, Optional[bytes], Optional[bytes], Optional[bytes]]


def _fail(status: int, what: str, err: Any = None) -> EngineError:
    detail = n.cstring(err) if err is not None else ""
    return EngineError(status, n.strerror(status).split(" ")[0].rstrip(":"), f"{what}: {detail}" if detail else what)


def _text(value: Union[str, bytes]) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


_REPLY_SIZE = ffi.sizeof("switchyard_reply")
_REPLY_LAYOUT = [
    (name, ffi.offsetof("switchyard_reply", name)) for name in ("request_id", "json", "json_len", "error_code", "error_message")
]
# Five 8-byte fields, in order, without padding: pack them as one "<5kQ".
_PACKABLE = _REPLY_SIZE == 40 and [o for _, o in _REPLY_LAYOUT] == [0, 8, 16, 24, 32] and ffi.sizeof("void *") == 8
_packers: Dict[int, "struct.Struct"] = {}


def _pack_replies(k: int, fields: List[int]) -> bytes:
    packer = _packers.get(k)
    if packer is None:
        packer = struct.Struct(f"={5 * k}Q")
        if len(_packers) < 4096:
            _packers[k] = packer
    return packer.pack(*fields)


class Context:
    """What a handler, middleware or hook sees of its connection.

    ``connection_id`` and ``request_id`` (``None`` in hooks) are integers
    below 2^53. Every method goes to the engine at once (after any reply
    still waiting for its batch), so it takes effect before the reply."""

    __slots__ = (
        "_engine",
        "channel",
        "action",
        "connection_id",
        "request_id",
        "_session_raw",
        "_session",
        "_route",
        "cancelled",
    )

    def __init__(
        self,
        engine: "Engine",
        channel: "Channel",
        connection_id: int,
        request_id: Optional[int] = None,
        action: Optional[str] = None,
        session_raw: Optional[bytes] = None,
        route: Optional["Route"] = None,
    ) -> None:
        self._engine = engine
        self.channel = channel
        self.connection_id = connection_id
        self.request_id = request_id
        self.action = action
        self._session_raw = session_raw
        self._session: Json = None
        self._route = route
        #: Set when the request was cancelled (its connection closed or the
        #: engine stopped); a reply made after that goes nowhere.
        self.cancelled = False

    # -- session ---------------------------------------------------------

    @property
    def session(self) -> Json:
        """The connection's session (``None`` without one): what the
        request started with, or what this handler set since."""
        raw = self._session_raw
        if raw is not None:
            self._session = _loads(raw)
            self._session_raw = None
        return self._session

    def set_session(self, session: Json) -> None:
        """Sets the session every later request on this connection sees
        (``None`` clears it)."""
        if session is None:
            self.clear_session()
            return
        body = _dumps(session)
        self._session_change()
        e = self._engine
        e._check(
            e._lib.switchyard_engine_set_session_json(e._ptr, self.connection_id, body, len(body)),
            "set_session",
        )
        self._session_raw = None
        self._session = session

    def clear_session(self) -> None:
        """Ends the session for every later request on this connection."""
        self._session_change()
        e = self._engine
        e._check(e._lib.switchyard_engine_clear_session(e._ptr, self.connection_id), "clear_session")
        self._session_raw = None
        self._session = None

    def _session_change(self) -> None:
        route = self._route
        if route is not None and not route.exclusive and not route._warned:
            route._warned = True
            log.warning(
                "switchyard: action %r changes the session but is not exclusive; a message "
                "pipelined after it may run with the old session (register it with exclusive=True)",
                route.name,
            )
        self._engine._before_effect()

    # -- connection ------------------------------------------------------

    @property
    def state(self) -> Dict[str, Any]:
        """A dict kept for this connection until it closes."""
        states = self._engine._states
        s = states.get(self.connection_id)
        if s is None:
            s = states[self.connection_id] = {}
        return s

    def send(self, message: Json) -> None:
        """Pushes a JSON object to this connection, through the channel's
        outbound middleware."""
        self._engine._push(self, message)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Closes this connection with ``code`` after what is queued."""
        e = self._engine
        e._before_effect()
        e._check(
            e._lib.switchyard_engine_close(e._ptr, self.connection_id, code, reason.encode("utf-8")),
            "close",
        )

    # -- pub/sub ---------------------------------------------------------

    def subscribe(self, topic: str) -> None:
        """Subscribes this connection to ``topic`` (at most 256 bytes)."""
        t = _text(topic)
        e = self._engine
        e._before_effect()
        e._check(e._lib.switchyard_engine_subscribe(e._ptr, self.connection_id, t, len(t)), "subscribe")

    def unsubscribe(self, topic: str) -> None:
        """Unsubscribes this connection from ``topic``."""
        t = _text(topic)
        e = self._engine
        e._before_effect()
        e._check(e._lib.switchyard_engine_unsubscribe(e._ptr, self.connection_id, t, len(t)), "unsubscribe")

    def publish(self, topic: str, data: Json) -> None:
        """Publishes ``data`` to every subscriber of ``topic``, this
        connection included when subscribed."""
        self._engine.publish(topic, data)

    def publish_except(self, topic: str, data: Json, except_connection: Optional[int] = None) -> None:
        """Publishes to every subscriber of ``topic`` but
        ``except_connection`` (by default this one)."""
        self._engine.publish(
            topic, data, except_connection=self.connection_id if except_connection is None else except_connection
        )

    def __repr__(self) -> str:
        return f"Context(channel={self.channel.name!r}, connection_id={self.connection_id}, action={self.action!r})"


class Route:
    """One action of a channel."""

    __slots__ = (
        "name",
        "handler",
        "public",
        "exclusive",
        "middleware",
        "input_schema",
        "output_schema",
        "call",
        "_warned",
    )

    def __init__(
        self,
        name: str,
        handler: Handler,
        public: bool,
        exclusive: bool,
        middleware: Sequence[Middleware],
        input_schema: Optional[Json] = None,
        output_schema: Optional[Json] = None,
    ) -> None:
        self.input_schema = input_schema
        self.output_schema = output_schema
        self.name = name
        self.handler = handler
        self.public = public
        self.exclusive = exclusive
        self.middleware = list(middleware)
        self.call: Handler = handler
        self._warned = False


def _compose(handler: Handler, chain: Sequence[Middleware]) -> Handler:
    """The onion: ``chain[0]`` outermost, the handler innermost."""
    if not chain:
        return handler

    async def run(ctx: Context, data: Json, i: int = 0) -> Json:
        if i == len(chain):
            result = handler(ctx, data)
            if inspect.isawaitable(result):
                result = await result
            return result
        mw = chain[i]

        def nxt(*args: Json) -> Awaitable[Json]:
            return run(ctx, args[0] if args else data, i + 1)

        return await mw(ctx, data, nxt)

    return run


class Channel:
    """A channel: a path, a routing key, actions, middleware and hooks.
    Create it with :meth:`Engine.channel`."""

    def __init__(
        self,
        engine: "Engine",
        name: str,
        path: Optional[str] = None,
        routing_keys: Optional[Sequence[str]] = None,
        close_on_error: bool = False,
    ) -> None:
        self.engine = engine
        self.name = name
        self.path = path or f"/{name}"
        self.routing_keys = list(routing_keys) if routing_keys else None
        self.close_on_error = close_on_error
        self.routes: Dict[str, Route] = {}
        self._by_bytes: Dict[bytes, Route] = {}
        self.middleware: List[Middleware] = []
        self.outbound_middleware: List[Outbound] = []
        self.connect_hooks: List[Hook] = []
        self.disconnect_hooks: List[Hook] = []
        self.message_hook: Optional[MessageHook] = None
        self.binary_hook: Optional[MessageHook] = None
        self.rate_limits: List[Tuple[Optional[str], float, int, int]] = []
        self.audit_logs: List[Optional[str]] = []
        self.topics: Dict[str, Json] = {}

    def add(
        self,
        name: str,
        handler: Handler,
        *,
        auth: bool = True,
        exclusive: Optional[bool] = None,
        middleware: Sequence[Middleware] = (),
        input_schema: Optional[Json] = None,
        output_schema: Optional[Json] = None,
    ) -> Handler:
        """Registers ``handler`` for action ``name``. ``auth=False`` makes
        it public. ``exclusive`` (default: ``True`` for public actions,
        ``False`` otherwise) makes the connection's later messages wait for
        this one's reply: required for actions that change the session.
        ``input_schema`` (a JSON Schema) is checked by the engine before the
        request reaches Python (``invalid_input`` naming the member);
        ``output_schema`` goes into the manifest only."""
        self.engine._not_started("add an action")
        if name in self.routes:
            raise ValueError(f"channel {self.name!r} already has action {name!r}")
        ex = (not auth) if exclusive is None else exclusive
        self.routes[name] = Route(name, handler, not auth, ex, middleware, input_schema, output_schema)
        return handler

    def action(
        self,
        name: Optional[str] = None,
        *,
        auth: bool = True,
        exclusive: Optional[bool] = None,
        middleware: Sequence[Middleware] = (),
        input_schema: Optional[Json] = None,
        output_schema: Optional[Json] = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add`; the name defaults to the
        function's."""

        def register(fn: Handler) -> Handler:
            return self.add(
                name or str(getattr(fn, "__name__", "")),
                fn,
                auth=auth,
                exclusive=exclusive,
                middleware=middleware,
                input_schema=input_schema,
                output_schema=output_schema,
            )

        return register

    def actions(self, table: Mapping[str, Union[Handler, Mapping[str, Any]]]) -> None:
        """Registers several actions: ``{"name": handler}`` or ``{"name":
        {"func": handler, "auth": False, "exclusive": True, "middleware":
        [...]}}``."""
        for name, spec in table.items():
            if callable(spec):
                self.add(name, spec)
            else:
                opts = dict(spec)
                func = opts.pop("func")
                unknown = set(opts) - {"auth", "exclusive", "middleware", "input_schema", "output_schema"}
                if unknown:
                    raise TypeError(f"action {name!r}: unknown options {sorted(unknown)}")
                self.add(name, func, **opts)

    def rate_limit(
        self, per_second: float, burst: int, *, route: Optional[str] = None, scope: str = "connection"
    ) -> None:
        """The engine's token-bucket rate limit (``rate_limited`` over it,
        before the request reaches Python): ``route`` or every route;
        ``scope`` is ``"connection"``, ``"connection_route"`` or ``"shared"``."""
        self.engine._not_started("add a rate limit")
        if scope not in _RATE_SCOPES:
            raise ValueError(f"scope is one of {sorted(_RATE_SCOPES)}")
        self.rate_limits.append((route, float(per_second), int(burst), _RATE_SCOPES[scope]))

    def audit_log(self, route: Optional[str] = None) -> None:
        """The engine's audit log (Rust ``log`` target ``switchyard::audit``)."""
        self.engine._not_started("add the audit log")
        self.audit_logs.append(route)

    def topic(self, name: str, schema: Json) -> None:
        """Declares a topic and its events' JSON Schema, for the manifest."""
        self.engine._not_started("declare a topic")
        self.topics[name] = schema

    def use(self, *middleware: Middleware) -> None:
        """Adds channel middleware around every action (after global, before
        the action's own)."""
        self.middleware.extend(middleware)

    def outbound(self, fn: Outbound) -> Outbound:
        """Adds channel middleware on pushes (``ctx.send``): return the
        message, a replacement, ``None`` to drop it, or a list to fan it
        out. Runs in the order added."""
        self.outbound_middleware.append(fn)
        return fn

    def on_connect(self, fn: Hook) -> Hook:
        """Runs ``fn(ctx)`` when a connection opens (send and subscribe from it)."""
        self.connect_hooks.append(fn)
        return fn

    def on_disconnect(self, fn: Hook) -> Hook:
        """Runs ``fn(ctx)`` once when a connection ends."""
        self.disconnect_hooks.append(fn)
        return fn

    def on_message(self, fn: MessageHook) -> MessageHook:
        """Receives ``fn(ctx, text)`` for every text message no action takes
        (instead of the engine's error reply)."""
        self.message_hook = fn
        return fn

    def on_binary(self, fn: MessageHook) -> MessageHook:
        """Receives ``fn(ctx, data: bytes)`` for binary messages."""
        self.binary_hook = fn
        return fn


class _Resume:
    """Hands a coroutine that already ran to its first suspension over to a
    task: the rest of ``yield from``, done by hand (Python 3.11)."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Any, first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, out = self.coro, self.first
        self.first = None
        while True:
            try:
                sent = yield out
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    out = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    out = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _finish(rest: _Resume) -> Any:
    return await rest


class Engine:
    """The engine, hosted on an asyncio loop.

    ``Engine(threads=2, max_message_bytes=..., ...)``: the keyword arguments
    are the engine's limits (PROTOCOL.md §7), named as in ``switchyard.h``'s
    ``switchyard_config_set_*``, plus ``slow_consumer_policy`` (``"close"``
    or ``"drop"``), ``queue_capacity`` and ``queue_low_watermark`` (the
    completion queue: reading pauses at capacity), ``batch`` (events per
    drain) and ``eager_tasks``: run an ``async`` handler at once, up to its
    first suspension, instead of scheduling a task for it. On Python 3.12+
    this is asyncio's own eager start and the default. On 3.11 it defaults
    to off: the first step then runs outside any task, so
    ``asyncio.current_task()`` is ``None`` and ``asyncio.timeout()`` or a
    ``TaskGroup`` fails until the handler's first ``await``; turn it on there
    only for handlers that do not need a task before they suspend."""

    def __init__(
        self,
        *,
        queue_capacity: int = 65536,
        queue_low_watermark: int = 16384,
        batch: int = 1024,
        slow_consumer_policy: str = "close",
        eager_tasks: Optional[bool] = None,
        **config: Any,
    ) -> None:
        unknown = set(config) - set(_CONFIG_FIELDS)
        if unknown:
            raise TypeError(f"unknown engine options {sorted(unknown)}; known: {sorted(_CONFIG_FIELDS)}")
        if slow_consumer_policy not in ("close", "drop"):
            raise ValueError("slow_consumer_policy is 'close' or 'drop'")
        self._lib = n.load()
        self._config = dict(config)
        self._policy = slow_consumer_policy
        self._queue = (queue_capacity, queue_low_watermark)
        self._batch = max(1, batch)
        self._eager = _EAGER_312 if eager_tasks is None else eager_tasks
        self._channels: Dict[str, Channel] = {}
        self._middleware: List[Middleware] = []
        self._ptr: Any = None
        self._cq: Any = None
        self._fd = -1
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._by_ptr: Dict[Any, Channel] = {}
        # Requests whose handler is still running: task, context, start time
        # (loop.time()), in start order.
        self._pending: Dict[int, Tuple["asyncio.Future[Any]", Context, float]] = {}
        # The engine answers `timeout` on its own but queues no CANCEL for it,
        # so a sweep cancels handlers still running past the reply timeout.
        self._reply_timeout = float(config.get("reply_timeout_ms", 30000)) / 1000
        self._sweep_every = min(1.0, max(0.01, self._reply_timeout / 4))
        self._sweeping = False
        self._hook_tasks: "set[asyncio.Future[Any]]" = set()
        self._replies: List[_Reply] = []
        self._flush_scheduled = False
        self._states: Dict[int, Dict[str, Any]] = {}
        self._conn_channel: Dict[int, Channel] = {}
        self._stopping = False
        self._closed: Optional[asyncio.Event] = None
        self._address = ""
        self._events: Any = None
        self._count: Any = None

    # -- definition ------------------------------------------------------

    def channel(
        self,
        name: str,
        *,
        path: Optional[str] = None,
        routing_keys: Optional[Sequence[str]] = None,
        close_on_error: bool = False,
        actions: Optional[Mapping[str, Union[Handler, Mapping[str, Any]]]] = None,
        middleware: Iterable[Middleware] = (),
        on_connect: Optional[Hook] = None,
        on_disconnect: Optional[Hook] = None,
    ) -> Channel:
        """Defines channel ``name``, served at ``path`` (default ``/name``)."""
        self._not_started("add a channel")
        if name in self._channels:
            raise ValueError(f"channel {name!r} already exists")
        ch = Channel(self, name, path, routing_keys, close_on_error)
        self._channels[name] = ch
        if actions:
            ch.actions(actions)
        ch.use(*middleware)
        if on_connect:
            ch.on_connect(on_connect)
        if on_disconnect:
            ch.on_disconnect(on_disconnect)
        return ch

    def use(self, *middleware: Middleware) -> None:
        """Adds global middleware, outermost, around every action of every
        channel."""
        self._not_started("add middleware")
        self._middleware.extend(middleware)

    def _not_started(self, what: str) -> None:
        if self._closed is not None:
            raise RuntimeError(f"cannot {what} after listen()")

    # -- life ------------------------------------------------------------

    @property
    def address(self) -> str:
        """``HOST:PORT`` the engine listens on (after :meth:`listen`)."""
        return self._address

    @property
    def port(self) -> int:
        """The port the engine listens on (after :meth:`listen`)."""
        return int(self._address.rsplit(":", 1)[1]) if self._address else 0

    async def listen(self, addr: str = "127.0.0.1:0") -> str:
        """Starts the engine on ``addr`` (port 0 picks a free one) and
        serves it on the running loop; returns ``HOST:PORT``."""
        if self._closed is not None:
            raise RuntimeError("an engine listens once (it is listening, or was closed)")
        if not self._channels:
            raise RuntimeError("define at least one channel before listen()")
        loop = asyncio.get_running_loop()
        lib = self._lib
        err = ffi.new("char[]", 512)
        cfg_out = ffi.new("switchyard_config **")
        self._check(lib.switchyard_config_new(cfg_out), "config_new")
        cfg = cfg_out[0]
        channels: List[Any] = []
        cq_out = ffi.new("switchyard_cq **")
        try:
            for key, value in self._config.items():
                fn = getattr(lib, _CONFIG_FIELDS[key])
                s = fn(cfg, value, err, len(err))
                if s:
                    raise _fail(s, key, err)
            policy = n.SLOW_CONSUMER_DROP if self._policy == "drop" else n.SLOW_CONSUMER_CLOSE
            s = lib.switchyard_config_set_slow_consumer_policy(cfg, policy, err, len(err))
            if s:
                raise _fail(s, "slow_consumer_policy", err)
            cap, low = self._queue
            s = lib.switchyard_cq_new(cap, low, cq_out, err, len(err))
            if s:
                raise _fail(s, "cq_new", err)
            self._cq = ffi.gc(cq_out[0], lib.switchyard_cq_free)
            for ch in self._channels.values():
                channels.append(self._build_channel(ch, err))
            arr = ffi.new("switchyard_channel *[]", channels)
            out = ffi.new("switchyard_engine **")
            s = lib.switchyard_engine_new(cfg, arr, len(channels), addr.encode("utf-8"), out, err, len(err))
            channels.clear()  # consumed, whatever the status
            if s:
                raise _fail(s, f"listen on {addr}", err)
        finally:
            for c in channels:
                lib.switchyard_channel_free(c)
            lib.switchyard_config_free(cfg)
        self._ptr = out[0]
        buf = ffi.new("char[]", 128)
        self._check(lib.switchyard_engine_local_addr(self._ptr, buf, len(buf)), "local_addr")
        self._address = n.cstring(buf)
        fd = ffi.new("int *")
        self._check(lib.switchyard_cq_fd(self._cq, fd), "cq_fd")
        self._fd = int(fd[0])
        self._events = ffi.new("switchyard_event[]", self._batch)
        self._count = ffi.new("size_t *")
        self._loop = loop
        self._closed = asyncio.Event()
        for ch in self._channels.values():
            chain = self._middleware + ch.middleware
            for route in ch.routes.values():
                route.call = _compose(route.handler, chain + route.middleware)
                ch._by_bytes[route.name.encode("utf-8")] = route
        loop.add_reader(self._fd, self._on_readable)
        return self._address

    def _build_channel(self, ch: Channel, err: Any) -> Any:
        lib = self._lib
        out = ffi.new("switchyard_channel **")
        s = lib.switchyard_channel_new(ch.name.encode("utf-8"), out, err, len(err))
        if s:
            raise _fail(s, f"channel {ch.name!r}", err)
        c = out[0]
        try:
            s = lib.switchyard_channel_set_path(c, ch.path.encode("utf-8"), err, len(err))
            if s:
                raise _fail(s, f"channel {ch.name!r} path", err)
            if ch.routing_keys:
                keys = [ffi.new("char[]", k.encode("utf-8")) for k in ch.routing_keys]
                karr = ffi.new("const char *[]", keys)
                s = lib.switchyard_channel_set_routing_keys(c, karr, len(keys), err, len(err))
                if s:
                    raise _fail(s, f"channel {ch.name!r} routing keys", err)
            if ch.close_on_error:
                self._check(lib.switchyard_channel_set_close_on_error(c, True), "close_on_error")
            for route in ch.routes.values():
                flags = (n.ROUTE_PUBLIC if route.public else 0) | (n.ROUTE_EXCLUSIVE if route.exclusive else 0)
                rname = route.name.encode("utf-8")
                s = lib.switchyard_channel_add_queued_route(c, rname, flags, self._cq, err, len(err))
                if s:
                    raise _fail(s, f"action {route.name!r}", err)
                for schema, setter in (
                    (route.input_schema, "switchyard_channel_set_input_schema"),
                    (route.output_schema, "switchyard_channel_set_output_schema"),
                ):
                    if schema is not None:
                        text = json.dumps(schema).encode("utf-8")
                        s = getattr(lib, setter)(c, rname, text, len(text), err, len(err))
                        if s:
                            raise _fail(s, f"action {route.name!r} schema", err)
            for rl_route, per_second, burst, scope in ch.rate_limits:
                r = rl_route.encode("utf-8") if rl_route is not None else ffi.NULL
                s = lib.switchyard_channel_add_rate_limit(c, r, per_second, burst, scope, err, len(err))
                if s:
                    raise _fail(s, "rate_limit", err)
            for audit_route in ch.audit_logs:
                r = audit_route.encode("utf-8") if audit_route is not None else ffi.NULL
                self._check(lib.switchyard_channel_add_audit_log(c, r), "audit_log")
            for topic, schema in ch.topics.items():
                text = json.dumps(schema).encode("utf-8")
                s = lib.switchyard_channel_add_topic(c, topic.encode("utf-8"), text, len(text), err, len(err))
                if s:
                    raise _fail(s, f"topic {topic!r}", err)
            mask = n.QUEUE_OPEN | n.QUEUE_CLOSE | n.QUEUE_CANCEL
            if ch.message_hook is not None:
                mask |= n.QUEUE_MESSAGE
            if ch.binary_hook is not None:
                mask |= n.QUEUE_BINARY
            self._check(lib.switchyard_channel_queue_events(c, self._cq, mask), "queue_events")
        except BaseException:
            lib.switchyard_channel_free(c)
            raise
        return c

    async def close(self) -> None:
        """Stops the engine: every client gets close 1001, pending handlers
        are cancelled, disconnect hooks run. Safe to call twice."""
        if self._ptr is None or self._stopping:
            if self._closed is not None:
                await self._closed.wait()
            return
        self._stopping = True
        loop = self._loop
        assert loop is not None
        self._flush()
        ptr = self._ptr
        try:
            await loop.run_in_executor(None, self._lib.switchyard_engine_stop, ptr)
        finally:
            loop.remove_reader(self._fd)
            # What the loops queued before they stopped: closes and cancels.
            for _ in range(1 << 16):
                if not self._drain():
                    break
            for task, ctx, _ in list(self._pending.values()):
                ctx.cancelled = True
                task.cancel()
            waiting = [t for t, _, _ in self._pending.values()] + list(self._hook_tasks)
            if waiting:
                await asyncio.wait(waiting, timeout=5)
            self._pending.clear()
            self._replies.clear()
            self._lib.switchyard_engine_free(ptr)
            self._ptr = None
            self._cq = None  # ffi.gc frees the queue, after the engine
            assert self._closed is not None
            self._closed.set()

    async def run(self, addr: str = "127.0.0.1:0", *, stop_signals: Sequence[int] = (2, 15)) -> None:
        """Listens on ``addr`` and serves until one of ``stop_signals``
        (SIGINT, SIGTERM) arrives or :meth:`close` is called elsewhere,
        then closes (clients get 1001)."""
        import signal as _signal

        await self.listen(addr)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        installed = []
        for sig in stop_signals:
            try:
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
                pass
        assert self._closed is not None
        closed = asyncio.ensure_future(self._closed.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([closed, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            stopped.cancel()
            # While closing, a repeated signal is absorbed rather than
            # cutting the graceful close short.
            for sig in installed:
                loop.add_signal_handler(sig, lambda: None)
            try:
                await self.close()
            finally:
                for sig in installed:
                    loop.remove_signal_handler(_signal.Signals(sig))

    async def serve_forever(self) -> None:
        """Waits until :meth:`close` finishes."""
        if self._closed is None:
            raise RuntimeError("call listen() first")
        await self._closed.wait()

    async def __aenter__(self) -> "Engine":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- engine-wide calls -----------------------------------------------

    def publish(self, topic: str, data: Json, *, except_connection: Optional[int] = None) -> None:
        """Publishes ``data`` to every subscriber of ``topic`` (but
        ``except_connection`` when given)."""
        t = _text(topic)
        body = _dumps(data)
        self._before_effect()
        if except_connection is None:
            s = self._lib.switchyard_engine_publish_json(self._ptr, t, len(t), body, len(body))
        else:
            s = self._lib.switchyard_engine_publish_except(self._ptr, t, len(t), body, len(body), except_connection)
        self._check(s, "publish")

    def send(self, connection_id: int, message: Json) -> None:
        """Pushes a JSON object to a connection (no channel middleware)."""
        body = _dumps(message)
        self._before_effect()
        self._check(self._lib.switchyard_engine_send_json(self._ptr, connection_id, body, len(body)), "send")

    def stats(self) -> Dict[str, int]:
        """The engine's counters (``switchyard_stats``)."""
        out = ffi.new("switchyard_stats *")
        self._check(self._lib.switchyard_engine_stats(self._ptr, out), "stats")
        s = out[0]
        return {name: int(getattr(s, name)) for name, _ in ffi.typeof("switchyard_stats").fields}

    def _check(self, status: int, what: str) -> None:
        """Raises for a failed call; a stale id (closed connection, stopped
        engine) is not an error for the host."""
        if status and status != n.STALE:
            if self._ptr is None and status == n.NULL_ARGUMENT:
                raise EngineError(n.STOPPED, "SWITCHYARD_STOPPED", f"{what}: the engine is not running")
            raise _fail(status, what)

    # -- the drain -------------------------------------------------------

    def _on_readable(self) -> None:
        self._drain()
        if self._replies:
            self._flush()

    def _drain(self) -> int:
        """One ``switchyard_cq_drain``; handles its events. Returns the count."""
        lib = self._lib
        events = self._events
        count = self._count
        s = lib.switchyard_cq_drain(self._cq, events, self._batch, count)
        if s:
            log.error("switchyard: cq_drain failed: %s", n.strerror(s))
            return 0
        k = int(count[0])
        by_ptr = self._by_ptr
        for i in range(k):
            e = events[i]
            kind = e.kind
            if kind == 2:  # REQUEST
                ch = by_ptr.get(e.channel)
                if ch is None:
                    ch = self._channel_of(e)
                self._request(ch, e)
            elif kind == 5:  # CANCEL
                self._cancel(e.request_id)
            elif kind == 1:  # OPEN
                ch = by_ptr.get(e.channel) or self._channel_of(e)
                self._conn_channel[e.conn_id] = ch
                if ch.connect_hooks:
                    sess = _unpack(e.session, e.session_len) if e.session_len else None
                    ctx = Context(self, ch, e.conn_id, session_raw=sess)
                    for hook in ch.connect_hooks:
                        self._run_hook(hook, ctx)
            elif kind == 4:  # CLOSE
                conn = e.conn_id
                ch = self._conn_channel.pop(conn, None) or by_ptr.get(e.channel) or self._channel_of(e)
                if ch.disconnect_hooks:
                    ctx = Context(self, ch, conn)
                    for hook in ch.disconnect_hooks:
                        self._run_hook(hook, ctx)
                self._states.pop(conn, None)
            elif kind == 3 or kind == 6:  # MESSAGE, BINARY
                ch = by_ptr.get(e.channel) or self._channel_of(e)
                raw = _unpack(e.payload, e.payload_len)
                on_data = ch.message_hook if kind == 3 else ch.binary_hook
                if on_data is not None:
                    arg: Any = raw.decode("utf-8", "replace") if kind == 3 else raw
                    self._run_hook(functools.partial(on_data, Context(self, ch, e.conn_id), arg), None)
        return k

    def _channel_of(self, e: Any) -> Channel:
        name = _unpack(e.channel, e.channel_len).decode("utf-8")
        ch = self._channels[name]
        self._by_ptr[ffi.cast("const char *", e.channel)] = ch
        return ch

    def _request(self, ch: Channel, e: Any) -> None:
        rid = e.request_id
        if self._stopping:
            return
        route = ch._by_bytes.get(_unpack(e.action, e.action_len))
        if route is None:  # cannot happen: the engine routes only to registered names
            self._replies.append((rid, None, b"unknown_action", b"no such action"))
            return
        ctx = Context(
            self,
            ch,
            e.conn_id,
            rid,
            route.name,
            _unpack(e.session, e.session_len) if e.session_len else None,
            route,
        )
        try:
            data = _loads(_unpack(e.payload, e.payload_len))
            result = route.call(ctx, data)
            if type(result) not in _PLAIN and (type(result) is _CoroutineType or inspect.isawaitable(result)):
                self._start(rid, ctx, result)
                return
        except SwitchyardError as err:
            self._replies.append((rid, None, err.code.encode("utf-8"), err.message.encode("utf-8")))
            return
        except Exception:
            self._internal(rid, ctx)
            return
        self._reply_value(rid, ctx, result)

    def _reply_value(self, rid: int, ctx: Context, result: Json) -> None:
        if result is None:
            self._replies.append((rid, None, None, None))
            return
        try:
            body = _dumps(result)
        except Exception:
            self._internal(rid, ctx)
            return
        self._replies.append((rid, body, None, None))

    def _internal(self, rid: int, ctx: Context) -> None:
        log.exception("switchyard: action %r failed", ctx.action)
        debug = bool(self._config.get("debug"))
        message = repr(sys.exc_info()[1]) if debug else "internal error"
        self._replies.append((rid, None, b"internal", message.encode("utf-8")))

    def _start(self, rid: int, ctx: Context, aw: Any) -> None:
        """Runs an awaitable result: at once up to its first suspension
        where possible, then as a task; replies when it is done."""
        loop = self._loop
        assert loop is not None
        if type(aw) is _CoroutineType:
            if self._eager and _EAGER_312:
                task = asyncio.Task(aw, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
                if task.done():
                    self._task_done(rid, ctx, task)
                    return
            elif self._eager:
                try:
                    first = aw.send(None)
                except StopIteration as stop:
                    self._reply_value(rid, ctx, stop.value)
                    return
                except SwitchyardError as err:
                    self._replies.append((rid, None, err.code.encode("utf-8"), err.message.encode("utf-8")))
                    return
                except Exception:
                    self._internal(rid, ctx)
                    return
                task = loop.create_task(_finish(_Resume(aw, first)))
            else:
                task = loop.create_task(aw)
        else:
            task = asyncio.ensure_future(aw, loop=loop)
        self._pending[rid] = (task, ctx, loop.time())
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(self._sweep_every, self._sweep)
        task.add_done_callback(functools.partial(self._task_finished, rid, ctx))

    def _cancel(self, rid: int) -> None:
        """The engine gave up on the request (its connection closed, the
        engine stopped, or the reply timed out): cancel its task."""
        p = self._pending.pop(rid, None)
        if p is not None:
            p[1].cancelled = True
            p[0].cancel()

    def _sweep(self) -> None:
        """Cancels handlers running past the reply timeout (the client has
        had its `timeout` error from the engine)."""
        self._sweeping = False
        if self._ptr is None or self._stopping or not self._pending:
            return
        assert self._loop is not None
        deadline = self._loop.time() - self._reply_timeout - 0.05
        expired = []
        for rid, (_, _, started) in self._pending.items():
            if started > deadline:
                break
            expired.append(rid)
        for rid in expired:
            self._cancel(rid)
        if self._pending:
            self._sweeping = True
            self._loop.call_later(self._sweep_every, self._sweep)

    def _task_finished(self, rid: int, ctx: Context, task: "asyncio.Future[Any]") -> None:
        self._pending.pop(rid, None)
        if self._ptr is None or self._stopping:
            return
        self._task_done(rid, ctx, task)
        if self._replies and not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _task_done(self, rid: int, ctx: Context, task: "asyncio.Future[Any]") -> None:
        if task.cancelled() or ctx.cancelled:
            if not ctx.cancelled:  # cancelled by the handler itself
                self._replies.append((rid, None, b"internal", b"internal error"))
            return
        exc = task.exception()
        if exc is None:
            self._reply_value(rid, ctx, task.result())
        elif isinstance(exc, SwitchyardError):
            self._replies.append((rid, None, exc.code.encode("utf-8"), exc.message.encode("utf-8")))
        else:
            log.error("switchyard: action %r failed", ctx.action, exc_info=exc)
            debug = bool(self._config.get("debug"))
            message = repr(exc) if debug else "internal error"
            self._replies.append((rid, None, b"internal", message.encode("utf-8")))

    def _run_hook(self, hook: Callable[..., Any], ctx: Optional[Context]) -> None:
        try:
            result = hook(ctx) if ctx is not None else hook()
        except Exception:
            log.exception("switchyard: hook failed")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result, loop=self._loop)
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_finished)

    def _hook_finished(self, task: "asyncio.Future[Any]") -> None:
        self._hook_tasks.discard(task)  # type: ignore[arg-type,unused-ignore]
        if not task.cancelled() and task.exception() is not None:
            log.error("switchyard: hook failed", exc_info=task.exception())

    # -- replies and effects ----------------------------------------------

    def _before_effect(self) -> None:
        if self._ptr is None:
            raise EngineError(n.STOPPED, "SWITCHYARD_STOPPED", "the engine is not running")
        if self._replies:
            self._flush()

    def _push(self, ctx: Context, message: Json) -> None:
        out: List[Json] = [message]
        for mw in ctx.channel.outbound_middleware:
            nxt: List[Json] = []
            for m in out:
                r = mw(ctx, m)
                if r is None:
                    continue
                if isinstance(r, list):
                    nxt.extend(r)
                else:
                    nxt.append(r)
            out = nxt
        self._before_effect()
        lib, ptr, conn = self._lib, self._ptr, ctx.connection_id
        for m in out:
            body = _dumps(m)
            self._check(lib.switchyard_engine_send_json(ptr, conn, body, len(body)), "send")

    def _flush(self) -> None:
        """Sends every waiting reply in one ``switchyard_reply_batch``."""
        self._flush_scheduled = False
        items = self._replies
        if not items or self._ptr is None:
            items.clear()
            return
        self._replies = []
        k = len(items)
        lib = self._lib
        if k == 1:
            rid, body, code, message = items[0]
            if code is None:
                s = lib.switchyard_engine_reply(self._ptr, rid, body or ffi.NULL, len(body) if body else 0)
            else:
                s = lib.switchyard_engine_reply_error(self._ptr, rid, code, message or ffi.NULL)
            if s and s != n.STALE:
                self._bad_reply(rid, s)
            return
        if not _PACKABLE:
            self._flush_records(items)
            return
        # The records are packed with `struct` into one buffer, pointing into
        # one blob that holds every body, code and message: two cffi objects
        # per batch instead of several per reply.
        parts: List[bytes] = []
        offsets: List[int] = []
        off = 0
        for _rid, body, code, message in items:
            if code is None:
                if body is not None:
                    parts.append(body)
                    offsets.append(off)
                    off += len(body)
            else:
                parts.append(code + b"\0")
                offsets.append(off)
                off += len(code) + 1
                if message is not None:
                    parts.append(message.replace(b"\0", b" ") + b"\0")
                    offsets.append(off)
                    off += len(message) + 1
        blob = ffi.from_buffer(b"".join(parts)) if parts else None
        base = int(ffi.cast("uintptr_t", blob)) if blob is not None else 0
        fields: List[int] = []
        j = 0
        for rid, body, code, message in items:
            if code is None:
                if body is not None:
                    fields += (rid, base + offsets[j], len(body), 0, 0)
                    j += 1
                else:
                    fields += (rid, 0, 0, 0, 0)
            else:
                c = base + offsets[j]
                j += 1
                m = 0
                if message is not None:
                    m = base + offsets[j]
                    j += 1
                fields += (rid, 0, 0, c, m)
        arr = ffi.from_buffer("switchyard_reply[]", _pack_replies(k, fields))
        self._send_batch(items, arr)
        del blob  # the bodies stay alive until the call above returned

    def _flush_records(self, items: List[_Reply]) -> None:
        """The portable batch: one cffi record per reply."""
        k = len(items)
        arr = ffi.new("switchyard_reply[]", k)
        keep: List[Any] = []
        for i in range(k):
            rid, body, code, message = items[i]
            r = arr[i]
            r.request_id = rid
            if code is None:
                if body is not None:
                    b = ffi.from_buffer(body)
                    keep.append(b)
                    r.json = b
                    r.json_len = len(body)
            else:
                c = ffi.new("char[]", code)
                keep.append(c)
                r.error_code = c
                if message:
                    m = ffi.new("char[]", message)
                    keep.append(m)
                    r.error_message = m
        self._send_batch(items, arr)

    def _send_batch(self, items: List[_Reply], arr: Any) -> None:
        k = len(items)
        statuses = ffi.new("switchyard_status[]", k)
        s = self._lib.switchyard_reply_batch(self._ptr, arr, k, statuses)
        if s:
            log.error("switchyard: reply_batch failed: %s", n.strerror(s))
            return
        if any(bytes(ffi.buffer(statuses))):
            for i in range(k):
                st = statuses[i]
                if st and st != n.STALE:
                    self._bad_reply(items[i][0], st)

    def _bad_reply(self, rid: int, status: int) -> None:
        # An error code the engine refused, or a reply it could not take:
        # the client still gets one answer.
        log.error("switchyard: the engine refused a reply (%s); answering internal", n.strerror(status))
        self._lib.switchyard_engine_reply_error(self._ptr, rid, b"internal", b"internal error")
