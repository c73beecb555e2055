"""The todos example on the Python host: the same app, byte for byte on the
wire, as engine/examples/todos.rs (see EXAMPLE-TODOS.md).

    python bindings/python/examples/todos.py [--addr HOST:PORT]

- Channel ``todos`` at ``/todos``, routed by ``action``.
- ``auth``, ``whoami`` and ``logout`` are public (and so exclusive: ``auth``
  and ``logout`` change the session, and the next message must see it);
  every other action needs a session, which the engine checks before the
  handler runs.
- Tokens are HS256 JWTs (``sub`` is the user id) signed with
  ``SWITCHYARD_JWT_SECRET`` (default ``switchyard-dev-secret``), checked
  here with ``hmac`` and ``hashlib``; an ``exp`` in the past is rejected.
- Every action's input has a JSON Schema, checked by the engine before the
  request reaches Python (``invalid_input`` naming the member); the input,
  reply and event schemas are served in the manifest at
  ``GET /switchyard/manifest.json``, as the Rust example does.
- Every change is published to ``todos:updated``, the publishing
  connection included when it subscribed.

Address: ``--addr``, else ``SWITCHYARD_ADDR``, else ``127.0.0.1:9001``. It
prints ``listening on ws://HOST:PORT/todos`` first on standard output, a
token for user ``demo`` on standard error, and stops on SIGINT or SIGTERM
(clients get close 1001), exiting 0.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import time
from typing import Any, Dict, List, Optional

try:  # the installed package, else the source tree beside this example
    import switchyard  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from switchyard import Context, Engine, SwitchyardError

DEFAULT_ADDR = "127.0.0.1:9001"
DEFAULT_SECRET = "switchyard-dev-secret"
MAX_TEXT_CHARS = 500
TOPIC = "todos:updated"

# ---------------------------------------------------------------------------
# Auth: HS256 JWTs whose `sub` claim is the user id.
# ---------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    if not all(c.isalnum() or c in "-_" for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: Dict[str, Any], secret: str) -> str:
    """An HS256 JWT of ``claims``."""
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64url(mac)}"


def verify(token: str, secret: str) -> str:
    """The ``sub`` of a valid token, else an ``invalid_token`` error."""

    def invalid(why: str) -> SwitchyardError:
        return SwitchyardError("invalid_token", why)

    parts = token.split(".")
    if len(parts) != 3:
        raise invalid("the token is not a valid HS256 JWT with a `sub`")
    head_b64, body_b64, sig_b64 = parts
    try:
        header = json.loads(_unb64url(head_b64))
        claims = json.loads(_unb64url(body_b64))
        sig = _unb64url(sig_b64)
    except ValueError:
        raise invalid("the token is not a valid HS256 JWT with a `sub`") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        raise invalid("the token is not a valid HS256 JWT with a `sub`")
    mac = hmac.new(secret.encode(), f"{head_b64}.{body_b64}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(mac, sig):
        raise invalid("the token's signature does not match")
    exp = claims.get("exp")
    if exp is not None:
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            raise invalid("the token is not a valid HS256 JWT with a `sub`: `exp` is not a number")
        if exp < time.time():
            raise invalid("the token has expired")
    sub = claims.get("sub")
    if not isinstance(sub, str):
        raise invalid("the token is not a valid HS256 JWT with a `sub`")
    return sub


# ---------------------------------------------------------------------------
# The app: todos in memory, shared by every connection (one asyncio thread,
# so no lock).
# ---------------------------------------------------------------------------


class App:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.last_id = 0
        self.todos: Dict[int, Dict[str, Any]] = {}  # insertion order is id order


def user_id(ctx: Context) -> str:
    session = ctx.session
    if not isinstance(session, dict) or not isinstance(session.get("userId"), str):
        raise SwitchyardError("unauthorized", "sign in with the auth action first")
    return str(session["userId"])


def read_id(data: Any) -> int:
    value = data.get("id")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SwitchyardError("invalid_input", "`id` must be a todo id (an integer)")
    return value


def not_found(todo_id: int) -> SwitchyardError:
    return SwitchyardError("not_found", f"no todo has id {todo_id}")


# ---------------------------------------------------------------------------
# Schemas: the same as engine/examples/todos.rs. Input schemas are enforced
# by the engine; all of them go into the manifest for typed clients.
# ---------------------------------------------------------------------------

EMPTY_INPUT = {"type": "object", "properties": {}}
ACK_OUTPUT = {"type": "object", "properties": {}, "additionalProperties": False}
ID_INPUT = {"type": "object", "properties": {"id": {"type": "integer", "minimum": 0}}, "required": ["id"]}
TODO_SCHEMA = {
    "title": "Todo",
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "text": {"type": "string"},
        "done": {"type": "boolean"},
        "owner": {"type": "string"},
    },
    "required": ["id", "text", "done", "owner"],
    "additionalProperties": False,
}
TODO_OUTPUT = {"type": "object", "properties": {"todo": TODO_SCHEMA}, "required": ["todo"], "additionalProperties": False}


def _with_todo(title: str, event: str) -> Dict[str, Any]:
    return {
        "title": title,
        "type": "object",
        "properties": {"event": {"const": event}, "todo": TODO_SCHEMA},
        "required": ["event", "todo"],
        "additionalProperties": False,
    }


EVENT_SCHEMA = {
    "title": "TodoEvent",
    "oneOf": [
        _with_todo("TodoCreated", "created"),
        _with_todo("TodoUpdated", "updated"),
        {
            "title": "TodoDeleted",
            "type": "object",
            "properties": {"event": {"const": "deleted"}, "id": {"type": "integer", "minimum": 1}},
            "required": ["event", "id"],
            "additionalProperties": False,
        },
    ],
}


def build(app: App) -> Engine:
    # Serve the manifest at `GET /switchyard/manifest.json`, so
    # `switchyard-gen` can write typed clients for this app.
    engine = Engine(threads=2, serve_manifest=True)
    todos = engine.channel("todos")
    todos.topic(TOPIC, EVENT_SCHEMA)

    @todos.action(
        "auth",
        auth=False,
        input_schema={"type": "object", "properties": {"token": {"type": "string"}}, "required": ["token"]},
        output_schema={
            "type": "object",
            "properties": {"ok": {"const": True}, "userId": {"type": "string"}},
            "required": ["ok", "userId"],
            "additionalProperties": False,
        },
    )
    def auth(ctx: Context, data: Any) -> Any:
        token = data.get("token")
        if not isinstance(token, str):
            raise SwitchyardError("invalid_input", "`token` must be a string")
        user = verify(token, app.secret)
        ctx.set_session({"userId": user})
        return {"ok": True, "userId": user}

    @todos.action(
        "whoami",
        auth=False,
        input_schema=EMPTY_INPUT,
        output_schema={
            "type": "object",
            "properties": {"userId": {"type": ["string", "null"]}},
            "required": ["userId"],
            "additionalProperties": False,
        },
    )
    def whoami(ctx: Context, data: Any) -> Any:
        session = ctx.session
        return {"userId": session.get("userId") if isinstance(session, dict) else None}

    @todos.action(
        "logout",
        auth=False,
        input_schema=EMPTY_INPUT,
        output_schema={
            "type": "object",
            "properties": {"ok": {"const": True}},
            "required": ["ok"],
            "additionalProperties": False,
        },
    )
    def logout(ctx: Context, data: Any) -> Any:
        ctx.clear_session()
        return {"ok": True}

    @todos.action(
        "create",
        input_schema={
            "type": "object",
            "properties": {"text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}},
            "required": ["text"],
        },
        output_schema=TODO_OUTPUT,
    )
    def create(ctx: Context, data: Any) -> Any:
        text = data.get("text")
        if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT_CHARS:
            raise SwitchyardError("invalid_input", f"`text` must be a string of 1 to {MAX_TEXT_CHARS} characters")
        owner = user_id(ctx)
        app.last_id += 1
        todo: Dict[str, Any] = {"id": app.last_id, "text": text, "done": False, "owner": owner}
        app.todos[app.last_id] = todo
        ctx.publish(TOPIC, {"event": "created", "todo": todo})
        return {"todo": todo}

    @todos.action(
        "list",
        input_schema=EMPTY_INPUT,
        output_schema={
            "type": "object",
            "properties": {"todos": {"type": "array", "items": TODO_SCHEMA}},
            "required": ["todos"],
            "additionalProperties": False,
        },
    )
    def list_todos(ctx: Context, data: Any) -> Any:
        items: List[Dict[str, Any]] = list(app.todos.values())
        return {"todos": items}

    @todos.action("toggle", input_schema=ID_INPUT, output_schema=TODO_OUTPUT)
    def toggle(ctx: Context, data: Any) -> Any:
        todo_id = read_id(data)
        todo = app.todos.get(todo_id)
        if todo is None:
            raise not_found(todo_id)
        todo["done"] = not todo["done"]
        ctx.publish(TOPIC, {"event": "updated", "todo": todo})
        return {"todo": todo}

    @todos.action(
        "delete",
        input_schema=ID_INPUT,
        output_schema={
            "type": "object",
            "properties": {"deleted": {"type": "integer", "minimum": 1}},
            "required": ["deleted"],
            "additionalProperties": False,
        },
    )
    def delete(ctx: Context, data: Any) -> Any:
        todo_id = read_id(data)
        if app.todos.pop(todo_id, None) is None:
            raise not_found(todo_id)
        ctx.publish(TOPIC, {"event": "deleted", "id": todo_id})
        return {"deleted": todo_id}

    @todos.action("subscribe", input_schema=EMPTY_INPUT, output_schema=ACK_OUTPUT)
    def subscribe(ctx: Context, data: Any) -> None:
        ctx.subscribe(TOPIC)

    @todos.action("unsubscribe", input_schema=EMPTY_INPUT, output_schema=ACK_OUTPUT)
    def unsubscribe(ctx: Context, data: Any) -> None:
        ctx.unsubscribe(TOPIC)

    return engine


def listen_addr(argv: List[str]) -> str:
    """``--addr HOST:PORT``, else ``SWITCHYARD_ADDR``, else the default."""
    flag: Optional[str] = None
    it = iter(argv)
    for arg in it:
        if arg == "--addr":
            flag = next(it, None)
            if flag is None:
                raise ValueError("--addr needs a value, e.g. 127.0.0.1:0")
        elif arg.startswith("--addr="):
            flag = arg[len("--addr=") :]
        else:
            raise ValueError(f"unknown argument {arg!r}")
    return flag or os.environ.get("SWITCHYARD_ADDR") or DEFAULT_ADDR


async def main(argv: List[str]) -> int:
    try:
        addr = listen_addr(argv)
    except ValueError as e:
        print(f"todos: {e}\nusage: todos.py [--addr HOST:PORT]", file=sys.stderr)
        return 2
    secret = os.environ.get("SWITCHYARD_JWT_SECRET", DEFAULT_SECRET)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals: List[str] = []

    def on_signal(sig: signal.Signals) -> None:
        signals.append(sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    engine = build(App(secret))
    try:
        bound = await engine.listen(addr)
    except Exception as e:
        print(f"todos: cannot listen on {addr}: {e}", file=sys.stderr)
        return 1

    # Exactly one line on standard output, so scripts and tests can read the
    # address (with the real port when port 0 was asked for).
    url = f"ws://{bound}/todos"
    print(f"listening on {url}", flush=True)

    token = sign({"sub": "demo", "exp": int(time.time()) + 24 * 60 * 60}, secret)
    print(f"A token for user `demo`, valid for 24 hours:\n\n  {token}\n", file=sys.stderr)
    print(f"Try it with any WebSocket client, e.g. `websocat {url}`, and send:", file=sys.stderr)
    print(f'  {{"action": "auth", "rid": 1, "token": "{token}"}}', file=sys.stderr)
    print('  {"action": "create", "rid": 2, "text": "Buy milk"}', file=sys.stderr)
    print('  {"action": "list", "rid": 3}', file=sys.stderr)
    print("Stop with Ctrl-C.", file=sys.stderr, flush=True)

    await stop.wait()
    # Shutting down: a second signal must not cut the graceful close short.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)
    print(f"todos: {signals[0] if signals else 'stop'}, closing connections", file=sys.stderr)
    await engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
