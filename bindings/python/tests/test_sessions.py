"""Sessions: set and cleared through the engine before the reply, seen by
the next message even when it was pipelined behind the change."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from conftest import connect, recv, recv_n, request, run
from switchyard import Context, Engine, SwitchyardError


def make_engine() -> Engine:
    engine = Engine(threads=2)
    ch = engine.channel("test")

    @ch.action("login", auth=False)
    def login(ctx: Context, data: Any) -> Any:
        if "user" not in data:
            raise SwitchyardError("invalid_input", "`user` is required")
        ctx.set_session({"user": data["user"]})
        assert ctx.session == {"user": data["user"]}
        return {"ok": True}

    @ch.action("slow_login", auth=False)
    async def slow_login(ctx: Context, data: Any) -> Any:
        await asyncio.sleep(0.1)
        ctx.set_session({"user": data["user"]})
        return {"ok": True}

    @ch.action("logout", auth=False)
    def logout(ctx: Context, data: Any) -> Any:
        ctx.clear_session()
        assert ctx.session is None
        return {"ok": True}

    @ch.action("whoami")
    def whoami(ctx: Context, data: Any) -> Any:
        return {"session": ctx.session}

    @ch.action("peek", auth=False, exclusive=False)
    def peek(ctx: Context, data: Any) -> Any:
        return {"session": ctx.session}

    @ch.action("sneaky")
    def sneaky(ctx: Context, data: Any) -> Any:
        ctx.set_session({"user": "sneaky"})
        return None

    return engine


def test_login_whoami_logout() -> None:
    async def main() -> None:
        engine = make_engine()
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                r = await request(ws, {"action": "whoami", "rid": 1})
                assert r["error"]["code"] == "unauthorized"
                assert await request(ws, {"action": "peek", "rid": 2}) == {"action": "peek", "rid": 2, "session": None}
                assert await request(ws, {"action": "login", "rid": 3, "user": "ann"}) == {"action": "login", "rid": 3, "ok": True}
                r = await request(ws, {"action": "whoami", "rid": 4})
                assert r == {"action": "whoami", "rid": 4, "session": {"user": "ann"}}
                # Another connection has its own session.
                async with connect(engine) as other:
                    r = await request(other, {"action": "whoami", "rid": 1})
                    assert r["error"]["code"] == "unauthorized"
                await request(ws, {"action": "logout", "rid": 5})
                r = await request(ws, {"action": "whoami", "rid": 6})
                assert r["error"]["code"] == "unauthorized"
        finally:
            await engine.close()

    run(main())


def test_pipelined_login_then_request_sees_the_session() -> None:
    async def main() -> None:
        engine = make_engine()
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                for i in range(20):
                    login = "slow_login" if i % 2 else "login"
                    # Three frames without waiting: the request after a login
                    # sees it, the one after a logout does not.
                    await ws.send(json.dumps({"action": login, "rid": 1, "user": f"u{i}"}))
                    await ws.send(json.dumps({"action": "whoami", "rid": 2}))
                    await ws.send(json.dumps({"action": "logout", "rid": 3}))
                    await ws.send(json.dumps({"action": "whoami", "rid": 4}))
                    got = await recv_n(ws, 4)
                    assert got[0] == {"action": login, "rid": 1, "ok": True}
                    assert got[1] == {"action": "whoami", "rid": 2, "session": {"user": f"u{i}"}}
                    assert got[2] == {"action": "logout", "rid": 3, "ok": True}
                    assert got[3]["error"]["code"] == "unauthorized", got[3]
        finally:
            await engine.close()

    run(main())


def test_session_change_on_a_non_exclusive_route_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        engine = make_engine()
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                await request(ws, {"action": "login", "rid": 1, "user": "a"})
                for rid in (2, 3):
                    assert await request(ws, {"action": "sneaky", "rid": rid}) == {"action": "sneaky", "rid": rid}
                r = await request(ws, {"action": "whoami", "rid": 4})
                assert r["session"] == {"user": "sneaky"}
        finally:
            await engine.close()

    with caplog.at_level(logging.WARNING, logger="switchyard"):
        run(main())
    warnings = [r for r in caplog.records if "not exclusive" in r.getMessage()]
    assert len(warnings) == 1


def test_default_exclusivity() -> None:
    engine = make_engine()
    routes = engine._channels["test"].routes
    assert routes["login"].exclusive and routes["logout"].exclusive
    assert not routes["peek"].exclusive and not routes["whoami"].exclusive
