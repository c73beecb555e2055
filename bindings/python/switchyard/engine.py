"""The asyncio host: channels and their actions, the completion-queue drain,
contexts, middleware and replies.

In: events drained from the engine's completion queue, one
``switchyard_cq_drain`` per wake-up of the notification fd
(``loop.add_reader``). The records are read with ``struct`` and, when the
engine lays the drain's strings back to back (checked by pointer
arithmetic each drain), the strings are copied in one block and sliced;
otherwise each is read through its own cffi pointer. Out: replies through ``switchyard_reply_batch``
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
- A queued upgrade (a channel with ``on_upgrade``) is answered once, with
  ``switchyard_engine_answer_upgrade``, unless its async hook is still
  running past the handshake timeout (the engine has refused it with 503;
  the task is cancelled) or the engine stops.
"""

from __future__ import annotations

import array
import asyncio
import functools
import inspect
import itertools
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
#: ``on_upgrade(request)`` decides a WebSocket handshake (see
#: :meth:`Channel.on_upgrade`); may be ``async``.
UpgradeHook = Callable[["UpgradeRequest"], Any]

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
# The drain calls orjson itself (no wrapper frame per request) while these
# two are the ones above; a test or host that replaces them is honoured.
_raw_loads: Callable[[bytes], Json] = _std_loads
_raw_dumps: Optional[Callable[[Json], bytes]] = None
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
            # Without options first (faster): the output is the same for
            # string keys; other keys need OPT_NON_STR_KEYS.
            try:
                return _or_dumps(value)
            except TypeError:
                pass
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
        _raw_loads = _or_loads
        _raw_dumps = _or_dumps
        JSON_BACKEND = "orjson"
# What _loads and _dumps are at import: the drain calls orjson directly only
# while they are still these.
_fast_loads_ref: Optional[Callable[[bytes], Json]] = _loads if JSON_BACKEND == "orjson" else None
_fast_dumps_ref: Optional[Callable[[Json], bytes]] = _dumps if JSON_BACKEND == "orjson" else None
# ffi.unpack is a Python-level wrapper around this backend call.
_unpack: Callable[[Any, int], bytes] = getattr(getattr(ffi, "_backend", None), "unpack", None) or ffi.unpack  # type: ignore[assignment]
_from_buffer: Callable[..., Any] = ffi.from_buffer
_cast: Callable[[Any, Any], Any] = ffi.cast
# The Python-level wrappers of ffi.cast and ffi.from_buffer parse their
# type each call; the backend functions take the type object.
_backend: Any = getattr(ffi, "_backend", None)
if hasattr(_backend, "cast") and hasattr(_backend, "from_buffer"):
    _cast = _backend.cast
    _from_buffer_raw = _backend.from_buffer
    _CHAR_ARRAY = ffi.typeof("char[]")

    def _from_buffer(*args: Any) -> Any:
        if len(args) == 1:
            return _from_buffer_raw(_CHAR_ARRAY, args[0], False)
        return _from_buffer_raw(args[0], args[1], False)

_UINTPTR = ffi.typeof("uintptr_t")
_CONST_CHAR_P = ffi.typeof("const char *")
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

def _fail(status: int, what: str, err: Any = None) -> EngineError:
    detail = n.cstring(err) if err is not None else ""
    return EngineError(status, n.strerror(status).split(" ")[0].rstrip(":"), f"{what}: {detail}" if detail else what)


def _text(value: Union[str, bytes]) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


_REPLY_SIZE = ffi.sizeof("switchyard_reply")
_REPLY_LAYOUT = [
    (name, ffi.offsetof("switchyard_reply", name)) for name in ("request_id", "json", "json_len", "error_code", "error_message")
]
# Five 8-byte fields, in order, without padding: written as 64-bit words.
_PACKABLE = _REPLY_SIZE == 40 and [o for _, o in _REPLY_LAYOUT] == [0, 8, 16, 24, 32] and ffi.sizeof("void *") == 8

# switchyard_event as eleven 8-byte words (kind and reserved share the
# first): read with `struct` rather than field by field through cffi.
_EVENT_FIELDS = (
    "kind",
    "reserved",
    "conn_id",
    "request_id",
    "channel",
    "channel_len",
    "action",
    "action_len",
    "payload",
    "payload_len",
    "session",
    "session_len",
)
_EVENTS_UNPACKABLE = (
    ffi.sizeof("switchyard_event") == 88
    and [ffi.offsetof("switchyard_event", f) for f in _EVENT_FIELDS] == [0, 4, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80]
    and ffi.sizeof("void *") == 8
    and ffi.sizeof("size_t") == 8
)
# kind, conn_id, request_id, channel, action_len, payload_len, session_len
_HEAD = struct.Struct("=I4xQQQ8x8xQ8xQ8xQ")
# action, action_len, payload, payload_len, session, session_len
_STRS = struct.Struct("=40x6Q")
_array = array.array
# The first word of a REQUEST record (kind 2, reserved 0), and zeros, for
# up to 4096 records; longer batches are checked one string at a time.
_REQUEST_WORDS = _array("Q", [2]) * 4096
_ZERO_WORDS = _array("Q", [0]) * 4096
_DIGIT = (1 << 64) - 1
_new_object: Callable[[type], Any] = object.__new__
_accumulate = itertools.accumulate


def _batch_strings(records: memoryview, k: int) -> Optional[bytes]:
    """The strings of the first ``k`` drained event ``records`` (bytes, 88
    per record), copied at once: the engine lays one drain's strings back
    to back, each event's action, payload and session, then the next
    event's. ``None`` when the pointers do not show that layout (then
    every string is to be read from its own pointer): nothing is read
    before the check passed."""
    end = 11 * k
    words = _array("Q")
    words.frombytes(records[: 88 * k])
    order = sys.byteorder
    # All requests (the usual batch): the layout is checked with big
    # integers, one 64-bit digit per record, in a few C-level passes.
    if k > 4 and words[0:end:11] == _REQUEST_WORDS[:k]:
        ap = int.from_bytes(words[5:end:11], order)
        al = int.from_bytes(words[6:end:11], order)
        pp = int.from_bytes(words[7:end:11], order)
        pl = int.from_bytes(words[8:end:11], order)
        sessions = words[9:end:11]
        session_lens = words[10:end:11]
        zeros = _ZERO_WORDS[:k]
        top = 64 * (k - 1)
        # Pointers plus lengths stay far below 2^64: no digit carries into
        # the next, so each comparison holds digit by digit.
        stop = pp + pl
        if sessions != zeros or session_lens != zeros:
            if int.from_bytes(sessions, order) == stop:  # each follows its payload
                stop += int.from_bytes(session_lens, order)
            else:  # some requests have none: see below
                stop = -1
        # Every payload follows its action; each record starts where the
        # one before it stopped.
        if stop >= 0 and ap + al == pp and ap >> 64 == stop & ((1 << top) - 1):
            base = ap & _DIGIT
            total = (stop >> top) - base
            return _unpack(_cast(_CONST_CHAR_P, base), total) if total else b""
    # Any other batch: the same check, one string at a time (empty strings
    # may be anywhere).
    pos = 0
    first = 0
    for ap1, al1, pp1, pl1, sp1, sl1 in _STRS.iter_unpack(records[: 88 * k]):
        if al1:
            if not pos:
                first = pos = ap1
            elif ap1 != pos:
                return None
            pos += al1
        if pl1:
            if not pos:
                first = pos = pp1
            elif pp1 != pos:
                return None
            pos += pl1
        if sl1:
            if not pos:
                first = pos = sp1
            elif sp1 != pos:
                return None
            pos += sl1
    return _unpack(_cast(_CONST_CHAR_P, first), pos - first) if pos else b""


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

    def set_session(self, session: Json) -> bool:
        """Sets the session every later request on this connection sees
        (``None`` clears it). ``False`` when the connection has ended."""
        if session is None:
            return self.clear_session()
        body = _dumps(session)
        self._session_change()
        e = self._engine
        posted = e._check(
            e._lib.switchyard_engine_set_session_json(e._ptr, self.connection_id, body, len(body)),
            "set_session",
        )
        self._session_raw = None
        self._session = session
        return posted

    def clear_session(self) -> bool:
        """Ends the session for every later request on this connection.
        ``False`` when the connection has ended."""
        self._session_change()
        e = self._engine
        posted = e._check(e._lib.switchyard_engine_clear_session(e._ptr, self.connection_id), "clear_session")
        self._session_raw = None
        self._session = None
        return posted

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

    def close(self, code: int = 1000, reason: str = "") -> bool:
        """Closes this connection with ``code`` after what is queued.
        ``False`` when it has already ended."""
        e = self._engine
        e._before_effect()
        return e._check(
            e._lib.switchyard_engine_close(e._ptr, self.connection_id, code, reason.encode("utf-8")),
            "close",
        )

    # -- pub/sub ---------------------------------------------------------

    def subscribe(self, topic: str) -> bool:
        """Subscribes this connection to ``topic`` (at most 256 bytes).
        ``False`` when the connection has ended."""
        t = _text(topic)
        e = self._engine
        e._before_effect()
        return e._check(e._lib.switchyard_engine_subscribe(e._ptr, self.connection_id, t, len(t)), "subscribe")

    def unsubscribe(self, topic: str) -> bool:
        """Unsubscribes this connection from ``topic``. ``False`` when the
        connection has ended."""
        t = _text(topic)
        e = self._engine
        e._before_effect()
        return e._check(e._lib.switchyard_engine_unsubscribe(e._ptr, self.connection_id, t, len(t)), "unsubscribe")

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


class UpgradeRequest:
    """A WebSocket handshake waiting for its channel's ``on_upgrade`` hook.

    ``path``; ``query`` (without ``?``, empty when there is none);
    ``raw_headers``, the ``(name, value)`` pairs in order with names as
    the client sent them; ``headers``, lower-cased names to values (the
    first of repeated ones). ``channel`` and ``connection_id`` (the id the
    connection keeps once accepted) are set for requests from the engine."""

    __slots__ = ("path", "query", "headers", "raw_headers", "channel", "connection_id")

    def __init__(
        self,
        path: str,
        query: str = "",
        raw_headers: Iterable[Tuple[str, str]] = (),
        *,
        channel: Optional["Channel"] = None,
        connection_id: int = 0,
    ) -> None:
        self.path = path
        self.query = query
        self.raw_headers: List[Tuple[str, str]] = [(str(k), str(v)) for k, v in raw_headers]
        headers: Dict[str, str] = {}
        for name, value in self.raw_headers:
            headers.setdefault(name.lower(), value)
        self.headers = headers
        self.channel = channel
        self.connection_id = connection_id

    @classmethod
    def _from_json(cls, raw: bytes, channel: "Channel", connection_id: int) -> "UpgradeRequest":
        obj = _loads(raw)
        return cls(
            str(obj.get("path", "")),
            str(obj.get("query") or ""),
            [(pair[0], pair[1]) for pair in obj.get("headers") or ()],
            channel=channel,
            connection_id=connection_id,
        )

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The first header called ``name`` (any case), else ``default``."""
        return self.headers.get(name.lower(), default)

    def cookie(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The first cookie called ``name`` in the ``Cookie`` headers, else
        ``default``."""
        for hname, value in self.raw_headers:
            if hname.lower() != "cookie":
                continue
            for part in value.split(";"):
                key, eq, val = part.strip().partition("=")
                if eq and key.strip() == name:
                    val = val.strip()
                    if len(val) >= 2 and val[0] == val[-1] == '"':
                        val = val[1:-1]
                    return val
        return default

    def __repr__(self) -> str:
        return f"UpgradeRequest(path={self.path!r}, query={self.query!r}, connection_id={self.connection_id})"


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
        self.upgrade_hook: Optional[UpgradeHook] = None
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

    def on_upgrade(self, fn: UpgradeHook) -> UpgradeHook:
        """Decides each WebSocket handshake to this channel (one hook per
        channel, set before ``listen()``): ``fn(request)`` gets an
        :class:`UpgradeRequest` and may be ``async`` (it runs as a task).
        It returns ``None`` or ``True`` to accept, ``{"session": value}``
        to accept with that initial session, ``False`` to refuse with 403.
        ``SwitchyardError("unauthorized", message)`` refuses with 401,
        another code with 403, ``message`` being the body; any other
        exception refuses with 403 ``internal error`` and is logged. A
        handshake not decided within the engine's ``handshake_timeout_ms``
        (counted from accept) gets 503, and the hook's task is cancelled."""
        self.engine._not_started("set an upgrade hook")
        self.upgrade_hook = fn
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
        # Upgrades decided by async hooks still running, by connection: the
        # task and the timer that cancels it after the handshake timeout.
        self._upgrades: Dict[int, Tuple["asyncio.Future[Any]", asyncio.TimerHandle]] = {}
        self._handshake_timeout = float(config.get("handshake_timeout_ms", 10000)) / 1000
        # Replies waiting for the next flush (see _put).
        self._rids: List[int] = []
        self._bodies: List[bytes] = []
        self._errs: List[Tuple[int, bytes, Optional[bytes]]] = []
        self._rcap = 0
        self._recbuf = bytearray()
        self._recbuf_c: Any = None
        self._recq = memoryview(b"").cast("Q")
        self._statuses: Any = None
        self._grow_records(64)
        self._flush_scheduled = False
        self._states: Dict[int, Dict[str, Any]] = {}
        self._conn_channel: Dict[int, Channel] = {}
        self._stopping = False
        self._closed: Optional[asyncio.Event] = None
        self._address = ""
        self._events: Any = None
        self._count: Any = None
        # The drained records as bytes and as 64-bit words, and the channels
        # by the address of their name.
        self._evb = memoryview(b"")
        self._evq = memoryview(b"").cast("Q")
        self._by_addr: Dict[int, Channel] = {}
        self._drained = 0

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
        on_upgrade: Optional[UpgradeHook] = None,
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
        if on_upgrade:
            ch.on_upgrade(on_upgrade)
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
        self._evb = memoryview(ffi.buffer(self._events)).cast("B")
        if _EVENTS_UNPACKABLE:
            self._evq = self._evb.cast("Q")
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
            if ch.upgrade_hook is not None:
                mask |= n.QUEUE_UPGRADE
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
            upgrades = list(self._upgrades.values())
            self._upgrades.clear()
            for utask, timer in upgrades:
                timer.cancel()
                utask.cancel()
            waiting = [t for t, _, _ in self._pending.values()] + list(self._hook_tasks) + [t for t, _ in upgrades]
            if waiting:
                await asyncio.wait(waiting, timeout=5)
            self._pending.clear()
            self._reset_replies()
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

    def send(self, connection_id: int, message: Json) -> bool:
        """Pushes a JSON object to a connection (no channel middleware).
        ``False`` when the connection has ended or the engine has stopped:
        nothing was sent."""
        body = _dumps(message)
        self._before_effect()
        return self._check(self._lib.switchyard_engine_send_json(self._ptr, connection_id, body, len(body)), "send")

    def stats(self) -> Dict[str, int]:
        """The engine's counters (``switchyard_stats``)."""
        out = ffi.new("switchyard_stats *")
        self._check(self._lib.switchyard_engine_stats(self._ptr, out), "stats")
        s = out[0]
        return {name: int(getattr(s, name)) for name, _ in ffi.typeof("switchyard_stats").fields}

    def _check(self, status: int, what: str) -> bool:
        """Raises for a failed call; a stale id (ended connection, stopped
        engine) is not an error for the host, and returns ``False``."""
        if status == n.STALE:
            return False
        if status:
            if self._ptr is None and status == n.NULL_ARGUMENT:
                raise EngineError(n.STOPPED, "SWITCHYARD_STOPPED", f"{what}: the engine is not running")
            raise _fail(status, what)
        return True

    # -- the drain -------------------------------------------------------

    def _on_readable(self) -> None:
        self._drain()
        if self._rids:
            self._flush()

    def _drain(self) -> int:
        """One ``switchyard_cq_drain``; handles its events. Returns the count."""
        count = self._count
        s = self._lib.switchyard_cq_drain(self._cq, self._events, self._batch, count)
        if s:
            log.error("switchyard: cq_drain failed: %s", n.strerror(s))
            return 0
        k = int(count[0])
        self._drained = k
        if k:
            # While stopping, requests are dropped: the portable drain does it.
            blob = _batch_strings(self._evb, k) if _EVENTS_UNPACKABLE and not self._stopping else None
            if blob is None:
                self._drain_records(k)
            else:
                self._drain_fast(k, blob)
        return k

    def _drain_fast(self, k: int, blob: bytes) -> None:
        """The events of one drain, read with ``struct`` from the records and
        sliced from ``blob`` (their strings, in record order)."""
        by_addr = self._by_addr
        rid_append = self._rids.append
        body_append = self._bodies.append
        new_ctx = _new_object
        Ctx = Context
        plain = _PLAIN
        loads: Callable[[bytes], Json] = _loads
        loads_again: Callable[[bytes], Json] = _loads
        if loads is _fast_loads_ref:
            loads = _raw_loads
            loads_again = _std_loads
        dumps: Callable[[Json], bytes] = _dumps
        if dumps is _fast_dumps_ref and _raw_dumps is not None:
            dumps = _raw_dumps
        last = -1
        ch: Any = None
        table: Dict[bytes, Route] = {}
        off = 0
        for kind, conn, rid, chan, al, pl, sl in _HEAD.iter_unpack(self._evb[: 88 * k]):
            if kind != 2:
                off = self._event(kind, conn, rid, chan, blob, off, al, pl, sl)
                continue
            if chan != last:
                ch = by_addr.get(chan)
                if ch is None:
                    ch = self._channel_at(chan)
                table = ch._by_bytes
                last = chan
            # This event's action, payload and session, back to back.
            a = off + al
            route = table.get(blob[off:a])
            p = a + pl
            off = p + sl
            if route is None:  # cannot happen: the engine routes only to registered names
                self._put(rid, None, b"unknown_action", b"no such action")
                continue
            ctx = new_ctx(Ctx)
            ctx._engine = self
            ctx.channel = ch
            ctx.connection_id = conn
            ctx.request_id = rid
            ctx.action = route.name
            ctx._session_raw = blob[p:off] if sl else None
            ctx._session = None
            ctx._route = route
            ctx.cancelled = False
            try:
                try:
                    data = loads(blob[a:p])
                except ValueError:
                    data = loads_again(blob[a:p])
                result = route.call(ctx, data)
            except SwitchyardError as err:
                self._put(rid, None, err.code.encode("utf-8"), err.message.encode("utf-8"))
                continue
            except Exception:
                self._internal(rid, ctx)
                continue
            if result is None:
                rid_append(rid)
                body_append(b"")
                continue
            if type(result) not in plain and (type(result) is _CoroutineType or inspect.isawaitable(result)):
                self._start(rid, ctx, result)
                continue
            try:
                try:
                    body = dumps(result)
                except TypeError:  # orjson without options cannot: the full _dumps
                    body = _dumps(result)
            except Exception:
                self._internal(rid, ctx)
                continue
            rid_append(rid)
            body_append(body)

    def _event(self, kind: int, conn: int, rid: int, chan: int, blob: bytes, off: int, al: int, pl: int, sl: int) -> int:
        """An event other than a request, in the fast drain; returns the
        offset of the next event's strings."""
        payload = blob[off + al : off + al + pl]
        session = blob[off + al + pl : off + al + pl + sl] if sl else None
        if kind == 5:  # CANCEL
            self._cancel(rid)
        elif kind == 1:  # OPEN
            ch = self._by_addr.get(chan) or self._channel_at(chan)
            self._conn_channel[conn] = ch
            if ch.connect_hooks:
                ctx = Context(self, ch, conn, session_raw=session)
                for hook in ch.connect_hooks:
                    self._run_hook(hook, ctx)
        elif kind == 4:  # CLOSE
            self._closed_conn(conn, lambda: self._by_addr.get(chan) or self._channel_at(chan))
        elif kind == 3 or kind == 6:  # MESSAGE, BINARY
            ch = self._by_addr.get(chan) or self._channel_at(chan)
            self._on_data(ch, kind, conn, payload)
        elif kind == 7:  # UPGRADE
            ch = self._by_addr.get(chan) or self._channel_at(chan)
            self._upgrade(ch, conn, payload)
        return off + al + pl + sl

    def _closed_conn(self, conn: int, channel: Callable[[], Channel]) -> None:
        ch = self._conn_channel.pop(conn, None) or channel()
        if ch.disconnect_hooks:
            ctx = Context(self, ch, conn)
            for hook in ch.disconnect_hooks:
                self._run_hook(hook, ctx)
        self._states.pop(conn, None)

    def _on_data(self, ch: Channel, kind: int, conn: int, raw: bytes) -> None:
        on_data = ch.message_hook if kind == 3 else ch.binary_hook
        if on_data is not None:
            arg: Any = raw.decode("utf-8", "replace") if kind == 3 else raw
            self._run_hook(functools.partial(on_data, Context(self, ch, conn), arg), None)

    def _channel_at(self, chan: int) -> Channel:
        """The channel whose name is at address ``chan`` (first sight of it)."""
        q = self._evq
        for i in range(self._drained):
            if q[11 * i + 3] == chan:
                return self._channel_of(self._events[i])
        raise KeyError(chan)  # pragma: no cover - the address came from these records

    def _drain_records(self, k: int) -> None:
        """The portable drain: each event read through its cffi record."""
        events = self._events
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
                self._closed_conn(e.conn_id, lambda: by_ptr.get(e.channel) or self._channel_of(e))
            elif kind == 3 or kind == 6:  # MESSAGE, BINARY
                ch = by_ptr.get(e.channel) or self._channel_of(e)
                self._on_data(ch, kind, e.conn_id, _unpack(e.payload, e.payload_len))
            elif kind == 7:  # UPGRADE
                ch = by_ptr.get(e.channel) or self._channel_of(e)
                self._upgrade(ch, e.conn_id, _unpack(e.payload, e.payload_len))

    def _channel_of(self, e: Any) -> Channel:
        name = _unpack(e.channel, e.channel_len).decode("utf-8")
        ch = self._channels[name]
        self._by_ptr[ffi.cast("const char *", e.channel)] = ch
        self._by_addr[int(ffi.cast("uintptr_t", e.channel))] = ch
        return ch

    def _request(self, ch: Channel, e: Any) -> None:
        rid = e.request_id
        if self._stopping:
            return
        route = ch._by_bytes.get(_unpack(e.action, e.action_len))
        if route is None:  # cannot happen: the engine routes only to registered names
            self._put(rid, None, b"unknown_action", b"no such action")
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
            self._put(rid, None, err.code.encode("utf-8"), err.message.encode("utf-8"))
            return
        except Exception:
            self._internal(rid, ctx)
            return
        self._reply_value(rid, ctx, result)

    def _reply_value(self, rid: int, ctx: Context, result: Json) -> None:
        if result is None:
            self._put(rid, None, None, None)
            return
        try:
            body = _dumps(result)
        except Exception:
            self._internal(rid, ctx)
            return
        self._put(rid, body, None, None)

    def _internal(self, rid: int, ctx: Context) -> None:
        log.exception("switchyard: action %r failed", ctx.action)
        debug = bool(self._config.get("debug"))
        message = repr(sys.exc_info()[1]) if debug else "internal error"
        self._put(rid, None, b"internal", message.encode("utf-8"))

    def _start(self, rid: int, ctx: Context, aw: Any) -> None:
        """Runs an awaitable result: at once up to its first suspension
        where possible, then as a task; replies when it is done."""
        loop = self._loop
        assert loop is not None
        if type(aw) is _CoroutineType:
            # A coroutine runs inside _settle, in the same task, which
            # replies itself: no done callback, no extra loop turn.
            if self._eager and _EAGER_312:
                task = asyncio.Task(self._settle(rid, ctx, aw), loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
                if task.done():
                    return
            elif self._eager:
                try:
                    first = aw.send(None)
                except StopIteration as stop:
                    self._reply_value(rid, ctx, stop.value)
                    return
                except SwitchyardError as err:
                    self._put(rid, None, err.code.encode("utf-8"), err.message.encode("utf-8"))
                    return
                except Exception:
                    self._internal(rid, ctx)
                    return
                task = loop.create_task(self._settle(rid, ctx, _Resume(aw, first)))
            else:
                task = loop.create_task(self._settle(rid, ctx, aw))
        else:
            task = asyncio.ensure_future(aw, loop=loop)
            task.add_done_callback(functools.partial(self._task_finished, rid, ctx))
        self._pending[rid] = (task, ctx, loop.time())
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(self._sweep_every, self._sweep)

    async def _settle(self, rid: int, ctx: Context, aw: Any) -> None:
        """Awaits a handler's coroutine inside its task and queues the
        reply, as _task_finished does for other awaitables."""
        try:
            result = await aw
        except asyncio.CancelledError:
            if not ctx.cancelled and self._ptr is not None and not self._stopping:  # cancelled by the handler itself
                self._put(rid, None, b"internal", b"internal error")
            raise
        except SwitchyardError as err:
            if not ctx.cancelled and self._ptr is not None and not self._stopping:
                self._put(rid, None, err.code.encode("utf-8"), err.message.encode("utf-8"))
        except Exception as exc:
            if not ctx.cancelled and self._ptr is not None and not self._stopping:
                self._failed(ctx, rid, exc)
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: answered, then on their way
            if not ctx.cancelled and self._ptr is not None and not self._stopping:
                self._failed(ctx, rid, exc)
            raise
        else:
            if not ctx.cancelled and self._ptr is not None and not self._stopping:
                self._reply_value(rid, ctx, result)
        finally:
            self._pending.pop(rid, None)
            if self._rids and not self._flush_scheduled and self._loop is not None:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)

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
        if self._rids and not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _task_done(self, rid: int, ctx: Context, task: "asyncio.Future[Any]") -> None:
        if task.cancelled() or ctx.cancelled:
            if not ctx.cancelled:  # cancelled by the handler itself
                self._put(rid, None, b"internal", b"internal error")
            return
        exc = task.exception()
        if exc is None:
            self._reply_value(rid, ctx, task.result())
        elif isinstance(exc, SwitchyardError):
            self._put(rid, None, exc.code.encode("utf-8"), exc.message.encode("utf-8"))
        else:
            self._failed(ctx, rid, exc)

    def _failed(self, ctx: Context, rid: int, exc: BaseException) -> None:
        log.error("switchyard: action %r failed", ctx.action, exc_info=exc)
        debug = bool(self._config.get("debug"))
        message = repr(exc) if debug else "internal error"
        self._put(rid, None, b"internal", message.encode("utf-8"))

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

    # -- upgrades ------------------------------------------------------------
    #
    # An UPGRADE event runs the channel's hook; its result (or, for an
    # async hook, its task's) is answered with switchyard_engine_answer_upgrade.
    # The engine refuses the handshake with 503 at its handshake timeout;
    # a task still running a little after that is cancelled, unanswered.

    def _upgrade(self, ch: Channel, conn: int, raw: bytes) -> None:
        if self._stopping:  # the answer would be stale
            return
        hook = ch.upgrade_hook
        try:
            if hook is None:  # cannot happen: only channels with a hook queue upgrades
                raise RuntimeError(f"channel {ch.name!r} has no upgrade hook")
            result = hook(UpgradeRequest._from_json(raw, ch, conn))
            if type(result) not in _PLAIN and inspect.isawaitable(result):
                loop = self._loop
                assert loop is not None
                task = asyncio.ensure_future(self._settle_upgrade(ch, conn, result), loop=loop)
                if not task.done():
                    timer = loop.call_later(self._handshake_timeout + 0.05, self._upgrade_expired, conn)
                    self._upgrades[conn] = (task, timer)
                return
        except SwitchyardError as err:
            self._refuse_upgrade(conn, err)
            return
        except Exception as exc:
            self._upgrade_failed(ch, conn, exc)
            return
        self._decide_upgrade(ch, conn, result)

    async def _settle_upgrade(self, ch: Channel, conn: int, aw: Any) -> None:
        try:
            result = await aw
        except asyncio.CancelledError:
            # Cancelled by the hook itself (not by the timeout or close(),
            # which forget the upgrade first): refused like a failure.
            if conn in self._upgrades:
                self._answer_upgrade(conn, 403, None, self._internal_text(None))
            raise
        except SwitchyardError as err:
            self._refuse_upgrade(conn, err)
        except Exception as exc:
            self._upgrade_failed(ch, conn, exc)
        else:
            self._decide_upgrade(ch, conn, result)
        finally:
            entry = self._upgrades.pop(conn, None)
            if entry is not None:
                entry[1].cancel()

    def _upgrade_expired(self, conn: int) -> None:
        entry = self._upgrades.pop(conn, None)
        if entry is not None:
            entry[0].cancel()

    def _decide_upgrade(self, ch: Channel, conn: int, result: Any) -> None:
        if result is None or result is True:
            self._answer_upgrade(conn, 0)
        elif result is False:
            self._answer_upgrade(conn, 403)
        elif isinstance(result, Mapping) and all(k == "session" for k in result):
            session = result.get("session")
            if session is None:
                self._answer_upgrade(conn, 0)
                return
            try:
                body = _dumps(session)
            except Exception as exc:
                self._upgrade_failed(ch, conn, exc)
                return
            self._answer_upgrade(conn, 0, body)
        else:
            log.error(
                "switchyard: upgrade hook of channel %r returned %r (expected None, True, False "
                'or {"session": value}); refusing the upgrade',
                ch.name,
                result,
            )
            self._answer_upgrade(conn, 403, None, self._internal_text(None))

    def _refuse_upgrade(self, conn: int, err: SwitchyardError) -> None:
        self._answer_upgrade(conn, 401 if err.code == "unauthorized" else 403, None, err.message)

    def _upgrade_failed(self, ch: Channel, conn: int, exc: BaseException) -> None:
        log.error("switchyard: upgrade hook of channel %r failed", ch.name, exc_info=exc)
        self._answer_upgrade(conn, 403, None, self._internal_text(exc))

    def _internal_text(self, exc: Optional[BaseException]) -> str:
        return repr(exc) if exc is not None and self._config.get("debug") else "internal error"

    def _answer_upgrade(self, conn: int, status: int, session: Optional[bytes] = None, body: Optional[str] = None) -> None:
        """``switchyard_engine_answer_upgrade``: 0 accepts (with ``session``,
        JSON text, or without), 400-499 refuses with ``body``. A stale
        connection (the client left, or got its 503) is not an error."""
        if self._ptr is None or self._stopping:
            return
        s = self._lib.switchyard_engine_answer_upgrade(
            self._ptr,
            conn,
            status,
            session if session is not None else ffi.NULL,
            len(session) if session is not None else 0,
            body.replace("\0", " ").encode("utf-8") if body else ffi.NULL,
        )
        if s == 0 or s == n.STALE:
            return
        log.error("switchyard: the engine refused an upgrade answer (%s)", n.strerror(s))
        if status == 0:  # an accept it could not take: the client still gets an answer
            self._answer_upgrade(conn, 403, None, "internal error")

    # -- replies and effects ----------------------------------------------

    def _before_effect(self) -> None:
        if self._ptr is None:
            raise EngineError(n.STOPPED, "SWITCHYARD_STOPPED", "the engine is not running")
        if self._rids:
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

    # -- replies ------------------------------------------------------------
    #
    # A waiting reply is its request id in ``_rids`` and its JSON body in
    # ``_bodies`` (empty: an acknowledgement, or an error listed in
    # ``_errs`` with its index), so the drain adds two list items per reply.
    # A flush joins the bodies into one buffer and writes the
    # ``switchyard_reply`` records column by column into a buffer kept
    # for the purpose (arrays and strided slices: no Python loop per
    # reply), then sends them in one ``switchyard_reply_batch``.

    def _put(self, rid: int, body: Optional[bytes], code: Optional[bytes], message: Optional[bytes]) -> None:
        """Queues one reply for the next flush: ``body`` (``None``: an
        acknowledgement), or the error ``code`` and ``message``."""
        self._rids.append(rid)
        self._bodies.append(body or b"")
        if code is not None:
            self._errs.append((len(self._rids) - 1, code, message))

    def _flush(self) -> None:
        """Sends every waiting reply in one ``switchyard_reply_batch``."""
        self._flush_scheduled = False
        rids = self._rids
        k = len(rids)
        if not k:
            return
        if self._ptr is None:
            self._reset_replies()
            return
        bodies = self._bodies
        if k == 1:  # one reply: no records to build
            self._flush_one(rids[0], bodies[0])
            return
        blob = b"".join(bodies)
        keep = [_from_buffer(blob)]
        base = int(_cast(_UINTPTR, keep[0]))
        if k > self._rcap:
            self._grow_records(k)
        if _PACKABLE:
            # Column by column, at C speed: request ids, body pointers (the
            # running sum of the lengths from the blob's address), lengths.
            # The error code and message columns are NULL but for errors
            # (set here, cleared after the call).
            q = self._recq
            end = 5 * k
            lens = list(map(len, bodies))
            q[0:end:5] = _array("Q", rids)
            ptrs = _array("Q", _accumulate(lens, initial=base))
            ptrs.pop()
            q[1:end:5] = ptrs
            q[2:end:5] = _array("Q", lens)
            for i, code, message in self._errs:
                c = _from_buffer(code + b"\0")
                keep.append(c)
                q[5 * i + 3] = int(_cast(_UINTPTR, c))
                if message is not None:
                    m = _from_buffer(message.replace(b"\0", b" ") + b"\0")
                    keep.append(m)
                    q[5 * i + 4] = int(_cast(_UINTPTR, m))
            arr = self._recbuf_c
        else:
            arr = self._records_portable(base, keep)
        statuses = self._statuses
        s = self._lib.switchyard_reply_batch(self._ptr, arr, k, statuses)
        del keep  # the bytes stay alive until the call above returned
        if _PACKABLE:
            for i, _, _ in self._errs:
                self._recq[5 * i + 3] = self._recq[5 * i + 4] = 0
        bad = s == 0 and bool(ffi.buffer(statuses, 4 * k)[:].strip(b"\0"))
        sent = rids[:] if bad else rids
        self._reset_replies()
        if s:
            log.error("switchyard: reply_batch failed: %s", n.strerror(s))
        elif bad:
            for i in range(k):
                st = statuses[i]
                if st and st != n.STALE:
                    self._bad_reply(sent[i], st)

    def _flush_one(self, rid: int, body: bytes) -> None:
        errs = self._errs
        err = errs[0] if errs else None
        self._reset_replies()
        if err is None:
            s = self._lib.switchyard_engine_reply(self._ptr, rid, body, len(body))
        else:
            message = err[2]
            text = message.replace(b"\0", b" ") if message is not None else ffi.NULL
            s = self._lib.switchyard_engine_reply_error(self._ptr, rid, err[1], text)
        if s and s != n.STALE:
            self._bad_reply(rid, s)

    def _reset_replies(self) -> None:
        # In place: a drain in progress holds these lists' methods.
        self._rids.clear()
        self._bodies.clear()
        self._errs.clear()

    def _grow_records(self, k: int) -> None:
        cap = max(k, 2 * self._rcap, 64)
        self._recbuf = bytearray(_REPLY_SIZE * cap)
        self._recbuf_c = _from_buffer(ffi.typeof("switchyard_reply[]"), self._recbuf)
        if _PACKABLE:
            self._recq = memoryview(self._recbuf).cast("Q")
        self._statuses = ffi.new("switchyard_status[]", cap)
        self._rcap = cap

    def _records_portable(self, base: int, keep: List[Any]) -> Any:
        """The records through cffi, for a layout ``struct`` cannot write."""
        k = len(self._rids)
        arr = ffi.new("switchyard_reply[]", k)
        errs = {i: (code, message) for i, code, message in self._errs}
        at = base
        for i in range(k):
            body = self._bodies[i]
            r = arr[i]
            r.request_id = self._rids[i]
            r.json = ffi.cast("const char *", at)
            r.json_len = len(body)
            at += len(body)
            if i in errs:
                code, message = errs[i]
                c = ffi.new("char[]", code)
                keep.append(c)
                r.error_code = c
                if message is not None:
                    m = ffi.new("char[]", message.replace(b"\0", b" "))
                    keep.append(m)
                    r.error_message = m
        return arr

    def _bad_reply(self, rid: int, status: int) -> None:
        # An error code the engine refused, or a reply it could not take:
        # the client still gets one answer.
        log.error("switchyard: the engine refused a reply (%s); answering internal", n.strerror(status))
        self._lib.switchyard_engine_reply_error(self._ptr, rid, b"internal", b"internal error")
