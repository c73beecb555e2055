"""The upgrade hook: a channel's ``on_upgrade`` decides each WebSocket
handshake (queued to Python as an UPGRADE event): accept, with an initial
session or without, or refuse with 401/403 and a body; a hook that never
answers leaves the client to the engine's 503 at the handshake timeout."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from conftest import request, run
from switchyard import Context, Engine, SwitchyardError, UpgradeRequest
from switchyard import engine as engine_module


@pytest.fixture(autouse=True, params=["fast", "portable"])
def drain(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test twice: with the struct-based drain, and with the portable
    one (each string read through its own pointer)."""
    portable_calls = []
    if request.param == "portable":
        monkeypatch.setattr(engine_module, "_batch_strings", lambda records, k: None)
    else:
        real = Engine._drain_records

        def spy(self: Engine, k: int) -> None:
            if not self._stopping:
                portable_calls.append(k)
            real(self, k)

        monkeypatch.setattr(Engine, "_drain_records", spy)
    yield str(request.param)
    assert not portable_calls  # the fast drain took every event


def make_engine(hook: Any, **config: Any) -> Engine:
    engine = Engine(threads=2, **config)
    ch = engine.channel("test", on_upgrade=hook)

    @ch.action("whoami")  # needs a session: only an upgrade can have set one
    def whoami(ctx: Context, data: Any) -> Any:
        return {"session": ctx.session}

    @ch.action("ping", auth=False)
    def ping(ctx: Context, data: Any) -> Any:
        return {"pong": True}

    return engine


def connect(engine: Engine, path: str = "/test", headers: Optional[Dict[str, str]] = None) -> Any:
    return websockets.connect(
        f"ws://{engine.address}{path}", additional_headers=headers, open_timeout=10, close_timeout=5
    )


async def refused(engine: Engine, path: str = "/test", headers: Optional[Dict[str, str]] = None) -> Tuple[int, bytes]:
    """Connects expecting a refusal; returns its HTTP status and body."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(engine, path, headers):
            pass
    response = info.value.response
    return int(response.status_code), bytes(response.body or b"")


def test_accept_with_a_session_a_route_sees() -> None:
    seen: List[UpgradeRequest] = []

    def hook(req: UpgradeRequest) -> Any:
        seen.append(req)
        token = req.header("Authorization")
        if token == "Bearer ann":
            return {"session": {"user": "ann"}}
        return None  # accepted without a session

    async def main() -> None:
        engine = make_engine(hook)
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine, headers={"Authorization": "Bearer ann"}) as ws:
                r = await request(ws, {"action": "whoami", "rid": 1})
                assert r == {"action": "whoami", "rid": 1, "session": {"user": "ann"}}
            async with connect(engine) as ws:
                r = await request(ws, {"action": "whoami", "rid": 2})
                assert r["error"]["code"] == "unauthorized"
                assert await request(ws, {"action": "ping", "rid": 3}) == {"action": "ping", "rid": 3, "pong": True}
        finally:
            await engine.close()

    run(main())
    assert len(seen) == 2
    first = seen[0]
    assert first.path == "/test" and first.query == ""
    assert first.channel is not None and first.channel.name == "test"
    assert first.headers["authorization"] == "Bearer ann"
    assert ("Authorization", "Bearer ann") in first.raw_headers
    assert first.header("AUTHORIZATION") == "Bearer ann" and first.header("x-missing") is None
    assert first.headers["upgrade"].lower() == "websocket"


def test_true_accepts_and_false_refuses_403() -> None:
    async def main() -> None:
        engine = make_engine(lambda req: req.query != "deny=1")
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine, "/test?ok=1") as ws:
                assert (await request(ws, {"action": "ping", "rid": 1}))["pong"] is True
            assert await refused(engine, "/test?deny=1") == (403, b"")
        finally:
            await engine.close()

    run(main())


def test_switchyard_error_refuses_with_its_status_and_message() -> None:
    def hook(req: UpgradeRequest) -> Any:
        if req.header("authorization") is None:
            raise SwitchyardError("unauthorized", "token required")
        raise SwitchyardError("forbidden", "not you")

    async def main() -> None:
        engine = make_engine(hook)
        await engine.listen("127.0.0.1:0")
        try:
            assert await refused(engine) == (401, b"token required")
            assert await refused(engine, headers={"Authorization": "Bearer eve"}) == (403, b"not you")
        finally:
            await engine.close()

    run(main())


def test_async_hook() -> None:
    async def hook(req: UpgradeRequest) -> Any:
        await asyncio.sleep(0.05)
        if req.header("authorization") != "Bearer bob":
            raise SwitchyardError("unauthorized", "token required")
        await asyncio.sleep(0.05)
        return {"session": {"user": "bob"}}

    async def main() -> None:
        engine = make_engine(hook)
        await engine.listen("127.0.0.1:0")
        try:
            # Several at once: the drain is not blocked by a hook's await.
            async def one(i: int) -> Any:
                async with connect(engine, headers={"Authorization": "Bearer bob"}) as ws:
                    return await request(ws, {"action": "whoami", "rid": i})

            got = await asyncio.gather(*(one(i) for i in range(10)))
            assert [g["session"] for g in got] == [{"user": "bob"}] * 10
            assert await refused(engine) == (401, b"token required")
        finally:
            await engine.close()

    run(main())


def test_hook_reads_a_cookie_and_the_query() -> None:
    engine = Engine(threads=1)
    ch = engine.channel("test")

    @ch.on_upgrade
    def hook(req: UpgradeRequest) -> Any:
        params = dict(urllib.parse.parse_qsl(req.query))
        sid = req.cookie("sid")
        if sid != "s3cret":
            return False
        return {"session": {"sid": sid, "room": params.get("room"), "theme": req.cookie("theme")}}

    @ch.action("whoami")
    def whoami(ctx: Context, data: Any) -> Any:
        return {"session": ctx.session}

    assert ch.upgrade_hook is hook

    async def main() -> None:
        await engine.listen("127.0.0.1:0")
        try:
            cookie = {"Cookie": 'theme="dark"; sid=s3cret'}
            async with connect(engine, "/test?room=lobby&x=1", cookie) as ws:
                r = await request(ws, {"action": "whoami", "rid": 1})
                assert r["session"] == {"sid": "s3cret", "room": "lobby", "theme": "dark"}
            assert await refused(engine, "/test?room=lobby", {"Cookie": "sid=wrong"}) == (403, b"")
            assert await refused(engine, "/test") == (403, b"")
        finally:
            await engine.close()

    run(main())


def test_hook_exception_refuses_403_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    calls = {"n": 0}

    def hook(req: UpgradeRequest) -> Any:
        calls["n"] += 1
        raise RuntimeError("boom")

    async def async_hook(req: UpgradeRequest) -> Any:
        await asyncio.sleep(0.01)
        raise KeyError("bang")

    async def main() -> None:
        engine = Engine(threads=1)
        engine.channel("test", on_upgrade=hook)
        engine.channel("other", on_upgrade=async_hook)
        engine.channel("bad", on_upgrade=lambda req: "yes")  # not an answer
        await engine.listen("127.0.0.1:0")
        try:
            assert await refused(engine, "/test") == (403, b"internal error")
            assert await refused(engine, "/other") == (403, b"internal error")
            assert await refused(engine, "/bad") == (403, b"internal error")
        finally:
            await engine.close()

    with caplog.at_level(logging.ERROR, logger="switchyard"):
        run(main())
    assert calls["n"] == 1
    failures = [r for r in caplog.records if r.name == "switchyard" and "upgrade hook" in r.getMessage()]
    assert len(failures) == 3, [r.getMessage() for r in caplog.records]
    assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in failures)
    assert any(r.exc_info and isinstance(r.exc_info[1], KeyError) for r in failures)


def test_hook_that_never_answers_gets_503_and_is_cancelled() -> None:
    cancelled = asyncio.Event()
    started: List[int] = []

    async def hook(req: UpgradeRequest) -> Any:
        started.append(req.connection_id)
        try:
            await asyncio.Event().wait()  # forever
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        nonlocal cancelled
        cancelled = asyncio.Event()
        engine = make_engine(hook, handshake_timeout_ms=300)
        await engine.listen("127.0.0.1:0")
        try:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            status, _ = await refused(engine)
            assert status == 503
            assert 0.2 < loop.time() - t0 < 5
            assert len(started) == 1
            # The hook's task is cancelled soon after the timeout.
            await asyncio.wait_for(cancelled.wait(), 5)
            assert not engine._upgrades
        finally:
            await engine.close()

    run(main())


def test_close_cancels_a_running_hook() -> None:
    async def hook(req: UpgradeRequest) -> Any:
        await asyncio.sleep(60)

    async def main() -> None:
        engine = make_engine(hook)
        await engine.listen("127.0.0.1:0")
        client = asyncio.ensure_future(refused(engine))
        for _ in range(200):
            if engine._upgrades:
                break
            await asyncio.sleep(0.01)
        assert engine._upgrades
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await engine.close()
        assert loop.time() - t0 < 3
        assert not engine._upgrades
        client.cancel()
        await asyncio.gather(client, return_exceptions=True)

    run(main())


def test_upgrade_request_helpers() -> None:
    req = UpgradeRequest(
        "/chat",
        "a=1",
        [("Host", "x"), ("X-Token", "one"), ("x-token", "two"), ("Cookie", "a=1; b = 2"), ("cookie", "a=3; c=")],
    )
    assert req.headers == {"host": "x", "x-token": "one", "cookie": "a=1; b = 2"}
    assert req.header("X-TOKEN") == "one"
    assert req.header("nope", "dflt") == "dflt"
    assert req.cookie("a") == "1" and req.cookie("b") == "2" and req.cookie("c") == ""
    assert req.cookie("d") is None
    assert req.raw_headers[2] == ("x-token", "two")
