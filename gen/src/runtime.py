# ---------------------------------------------------------------------------
# Runtime: the same in every generated client. Needs Python 3.11+ and the
# `websockets` package (13 or later).
# ---------------------------------------------------------------------------

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypeAlias, TypedDict, overload

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

ChannelStatus: TypeAlias = Literal["connecting", "open", "reconnecting", "closed"]


class SwitchyardError(Exception):
    """An error reply from the server, or the client's own failure.

    ``code`` is the server's (``not_found``, ``unauthorized``...) or the
    client's own: ``request_timeout`` (no reply in time), ``disconnected``
    (the connection dropped while the request was in flight), ``closed``.
    """

    def __init__(
        self, code: str, message: str, action: str | None = None, rid: int | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.action = action
        self.rid = rid


@dataclass(frozen=True)
class Reconnect:
    """Reconnect with exponential backoff (on by default)."""

    initial_delay: float = 0.25
    max_delay: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None


@dataclass(frozen=True)
class TopicActions:
    """The actions that subscribe a connection to a topic and unsubscribe it.

    ``subscribe`` is sent when the first listener subscribes and again after
    every reconnect; ``unsubscribe`` when the last listener leaves.
    """

    subscribe: str | None = None
    subscribe_payload: Mapping[str, object] | None = None
    unsubscribe: str | None = None
    unsubscribe_payload: Mapping[str, object] | None = None


class Subscription:
    """Returned by ``subscribe``: call it to unsubscribe; ``await sub.ready()``
    waits until the subscribe action (if any) was answered."""

    def __init__(self, off: Callable[[], None], ready: "asyncio.Future[None]") -> None:
        self._off = off
        self._ready = ready

    def __call__(self) -> None:
        self._off()

    async def ready(self) -> None:
        await asyncio.shield(self._ready)


class _Pending:
    def __init__(self, action: str, future: "asyncio.Future[Any]") -> None:
        self.action = action
        self.future = future


class _Connection:
    """One channel's connection: requests matched by ``rid``, listeners, reconnect."""

    def __init__(
        self,
        url: str,
        routing_key: str,
        unwrap: frozenset[str],
        *,
        timeout: float,
        reconnect: "bool | Reconnect",
        on_open: Callable[[], Awaitable[None]] | None,
        topics: Mapping[str, TopicActions] | None,
        on_push: Callable[[dict[str, Any]], object] | None,
        on_status: Callable[[ChannelStatus], object] | None,
        on_error: Callable[[BaseException], object] | None,
    ) -> None:
        self.url = url
        self._routing_key = routing_key
        self._unwrap = unwrap
        self._timeout = timeout
        self._reconnect: Reconnect | None = (
            None if reconnect is False else Reconnect() if reconnect is True else reconnect
        )
        self._on_open = on_open
        self._topics: dict[str, TopicActions] = dict(topics or {})
        self._on_push = on_push
        self._on_status = on_status
        self._on_error = on_error
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self._next_rid = 1
        self._pending: dict[int, _Pending] = {}
        self._listeners: dict[str, list[Callable[[Any], object]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.status: ChannelStatus = "connecting"
        self._runner = asyncio.get_running_loop().create_task(self._run())

    # -- public ---------------------------------------------------------------

    async def request(
        self, action: str, payload: Mapping[str, Any] | None, timeout: float | None, direct: bool
    ) -> Any:
        if self._closed:
            raise SwitchyardError("closed", "the channel is closed", action)
        rid = self._next_rid
        self._next_rid += 1
        limit = self._timeout if timeout is None else timeout
        frame = dict(payload or {})
        frame[self._routing_key] = action
        frame["rid"] = rid
        text = json.dumps(frame)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def go() -> Any:
            if direct:
                ws = self._ws
                if ws is None:
                    raise SwitchyardError("disconnected", "the connection is not open", action, rid)
            else:
                while True:
                    await self._ready.wait()
                    if self._closed:
                        raise SwitchyardError("closed", "the channel is closed", action, rid)
                    if self._ws is not None and self._ready.is_set():
                        ws = self._ws
                        break
            self._pending[rid] = _Pending(action, future)
            try:
                await ws.send(text)
            except (OSError, WebSocketException):
                raise SwitchyardError(
                    "disconnected", "the connection dropped before the reply came", action, rid
                ) from None
            return await future

        try:
            return await asyncio.wait_for(go(), limit)
        except TimeoutError:
            raise SwitchyardError(
                "request_timeout", f"no reply to '{action}' within {limit} s", action, rid
            ) from None
        finally:
            self._pending.pop(rid, None)

    def subscribe(self, topic: str, listener: Callable[[Any], object]) -> Subscription:
        listeners = self._listeners.setdefault(topic, [])
        first = not listeners
        listeners.append(listener)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        actions = self._topics.get(topic)
        if first and actions is not None and actions.subscribe is not None:
            if self._ready.is_set():
                self._spawn(self._call(actions.subscribe, actions.subscribe_payload), ready)
            else:
                # The set-up after the connection opens sends it.
                self._spawn(self._wait_ready(), ready)
        else:
            ready.set_result(None)
        active = True

        def off() -> None:
            nonlocal active
            if not active:
                return
            active = False
            current = self._listeners.get(topic, [])
            if listener in current:
                current.remove(listener)
            if not current:
                self._listeners.pop(topic, None)
                acts = self._topics.get(topic)
                if acts is not None and acts.unsubscribe is not None and self._ready.is_set():
                    self._spawn(self._call(acts.unsubscribe, acts.unsubscribe_payload), None)

        return Subscription(off, ready)

    async def wait_ready(self) -> None:
        await self._wait_ready()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready.set()  # wakes waiting requests, which then fail with `closed`
        self._fail_all("closed", "the channel was closed")
        ws = self._ws
        if ws is not None:
            await ws.close()
        self._runner.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(self._runner, *self._tasks, return_exceptions=True)
        self._set_status("closed")

    # -- internals ------------------------------------------------------------

    async def _wait_ready(self) -> None:
        await self._ready.wait()
        if self._closed:
            raise SwitchyardError("closed", "the channel is closed")

    async def _call(self, action: str, payload: Mapping[str, object] | None) -> None:
        await self.request(action, payload, None, True)

    def _spawn(self, coro: Awaitable[None], done: "asyncio.Future[None] | None") -> None:
        async def run() -> None:
            try:
                await coro
            except BaseException as e:  # reported, and handed to the future
                if done is not None and not done.done():
                    done.set_exception(e)
                    done.exception()  # retrieved: no "never retrieved" warning
                if not isinstance(e, asyncio.CancelledError):
                    self._report(e)
                return
            if done is not None and not done.done():
                done.set_result(None)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        attempts = 0
        opened = False
        while not self._closed:
            self._set_status("reconnecting" if opened or attempts else "connecting")
            try:
                async with connect(self.url, open_timeout=10, max_size=None) as ws:
                    self._ws = ws
                    reader = asyncio.get_running_loop().create_task(self._read(ws))
                    try:
                        await self._set_up(ws)
                        if self._ws is ws and not reader.done():
                            opened = True
                            attempts = 0
                            self._ready.set()
                            self._set_status("open")
                        await reader
                    finally:
                        reader.cancel()
            except (OSError, WebSocketException, TimeoutError):
                pass
            finally:
                self._ws = None
                if not self._closed:
                    self._ready.clear()
                self._fail_all("disconnected", "the connection dropped before the reply came")
            if self._closed or self._reconnect is None:
                break
            r = self._reconnect
            if r.max_attempts is not None and attempts >= r.max_attempts:
                break
            delay = min(r.max_delay, r.initial_delay * r.factor**attempts)
            delay *= 1 + r.jitter * (random.random() * 2 - 1)
            attempts += 1
            self._set_status("reconnecting")
            await asyncio.sleep(max(0.0, delay))
        if not self._closed:
            self._closed = True
            self._ready.set()
            self._set_status("closed")

    async def _set_up(self, ws: ClientConnection) -> None:
        try:
            if self._on_open is not None:
                await self._on_open()
            done: set[str] = set()
            while self._ws is ws:
                pending = [t for t in self._listeners if t not in done]
                if not pending:
                    break
                done.add(pending[0])
                acts = self._topics.get(pending[0])
                if acts is not None and acts.subscribe is not None:
                    await self._call(acts.subscribe, acts.subscribe_payload)
        except SwitchyardError as e:
            if e.code != "disconnected":
                self._report(e)
        except Exception as e:  # the user's on_open failed
            self._report(e)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for text in ws:
                if isinstance(text, str):
                    self._on_frame(text)
        except (OSError, WebSocketException):
            pass

    def _on_frame(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        rid = msg.get("rid")
        topic = msg.get("topic")
        if isinstance(topic, str) and "data" in msg and rid is None:
            for listener in list(self._listeners.get(topic, [])):
                try:
                    result = listener(msg["data"])
                    if asyncio.iscoroutine(result):
                        self._spawn(result, None)
                except Exception as e:
                    self._report(e)
            return
        pending = self._pending.pop(rid, None) if isinstance(rid, int) else None
        if pending is None:
            if self._on_push is not None:
                self._on_push(msg)
            return
        if pending.future.done():
            return
        error = msg.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message")
            pending.future.set_exception(
                SwitchyardError(
                    code if isinstance(code, str) else "internal",
                    message if isinstance(message, str) else str(code),
                    pending.action,
                    rid,
                )
            )
            return
        out = {k: v for k, v in msg.items() if k not in ("rid", self._routing_key)}
        pending.future.set_result(out.get("result") if pending.action in self._unwrap else out)

    def _fail_all(self, code: str, message: str) -> None:
        for rid, p in list(self._pending.items()):
            del self._pending[rid]
            if not p.future.done():
                p.future.set_exception(SwitchyardError(code, message, p.action, rid))

    def _set_status(self, status: ChannelStatus) -> None:
        if self.status == status:
            return
        self.status = status
        if self._on_status is not None:
            self._on_status(status)

    def _report(self, e: BaseException) -> None:
        if self._on_error is not None:
            self._on_error(e)


def _join_url(base: str, path: str) -> str:
    trimmed = base.rstrip("/")
    return trimmed if trimmed.endswith(path) else trimmed + path
