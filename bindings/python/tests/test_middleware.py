"""Wire middleware (the onion: global, channel, route), channel middleware
on pushes, lifecycle hooks, dict registration and the default handler."""

from __future__ import annotations

import asyncio
import json
from typing import Any, List

from conftest import connect, nothing_within, recv, recv_n, request, run
from switchyard import Context, Engine, Next, SwitchyardError


def test_onion_order_short_circuit_and_data_rewrite() -> None:
    async def main() -> None:
        trail: List[str] = []

        def mw(name: str) -> Any:
            async def layer(ctx: Context, data: Any, nxt: Next) -> Any:
                trail.append(f"{name}>")
                if data.get("stop") == name:
                    return {"stopped_by": name}
                result = await nxt({**data, "seen": data.get("seen", []) + [name]})
                trail.append(f"<{name}")
                return result

            return layer

        engine = Engine(threads=1)
        engine.use(mw("global"))
        ch = engine.channel("test", middleware=[mw("channel")])

        @ch.action("go", auth=False, middleware=[mw("route")])
        def go(ctx: Context, data: Any) -> Any:
            trail.append("handler")
            return {"seen": data["seen"]}

        async def deny(ctx: Context, data: Any, nxt: Next) -> Any:
            raise SwitchyardError("forbidden", "no")

        ch.add("denied", lambda c, d: {"reached": True}, auth=False, middleware=[deny])

        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                r = await request(ws, {"action": "go", "rid": 1})
                assert r == {"action": "go", "rid": 1, "seen": ["global", "channel", "route"]}
                assert trail == ["global>", "channel>", "route>", "handler", "<route", "<channel", "<global"]
                r = await request(ws, {"action": "go", "rid": 2, "stop": "channel"})
                assert r == {"action": "go", "rid": 2, "stopped_by": "channel"}
                r = await request(ws, {"action": "denied", "rid": 3})
                assert r["error"] == {"code": "forbidden", "message": "no"}
        finally:
            await engine.close()

    run(main())


def test_outbound_middleware_passes_replaces_drops_and_fans_out() -> None:
    async def main() -> None:
        engine = Engine(threads=1)
        ch = engine.channel("test")

        @ch.outbound
        def shape(ctx: Context, msg: Any) -> Any:
            kind = msg.get("kind")
            if kind == "drop":
                return None
            if kind == "many":
                return [{"part": 1}, {"part": 2}]
            if kind == "replace":
                return {"replaced": True}
            return msg

        @ch.outbound
        def stamp(ctx: Context, msg: Any) -> Any:
            return {**msg, "conn": ctx.connection_id > 0}

        @ch.action("push", auth=False)
        async def push(ctx: Context, data: Any) -> None:
            for kind in ("pass", "drop", "many", "replace"):
                ctx.send({"kind": kind})

        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                await ws.send(json.dumps({"action": "push", "rid": 1}))
                got = await recv_n(ws, 5)
                assert got == [
                    {"kind": "pass", "conn": True},
                    {"part": 1, "conn": True},
                    {"part": 2, "conn": True},
                    {"replaced": True, "conn": True},
                    {"action": "push", "rid": 1},
                ]
        finally:
            await engine.close()

    run(main())


def test_hooks_dict_registration_state_and_default_handler() -> None:
    async def main() -> None:
        opened: List[int] = []
        closed: asyncio.Queue[int] = asyncio.Queue()

        def on_connect(ctx: Context) -> None:
            opened.append(ctx.connection_id)
            ctx.state["n"] = 0
            ctx.subscribe("news")
            ctx.send({"hello": ctx.connection_id})

        async def on_disconnect(ctx: Context) -> None:
            await asyncio.sleep(0)
            closed.put_nowait(ctx.connection_id)

        def count(ctx: Context, data: Any) -> Any:
            ctx.state["n"] += 1
            return {"n": ctx.state["n"]}

        async def whoami(ctx: Context, data: Any) -> Any:
            return {"conn": ctx.connection_id}

        engine = Engine(threads=1)
        ch = engine.channel(
            "test",
            path="/custom",
            routing_keys=["type", "action"],
            actions={
                "count": {"func": count, "auth": False, "exclusive": False},
                "whoami": {"func": whoami, "auth": False},
            },
            on_connect=on_connect,
            on_disconnect=on_disconnect,
        )

        @ch.on_message
        def fallback(ctx: Context, text: str) -> None:
            ctx.send({"unrouted": text})

        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine, "/custom") as ws:
                hello = await recv(ws)
                conn = hello["hello"]
                assert opened == [conn]
                assert await request(ws, {"type": "count", "rid": 1}) == {"type": "count", "rid": 1, "n": 1}
                assert await request(ws, {"action": "count", "rid": 2}) == {"action": "count", "rid": 2, "n": 2}
                assert (await request(ws, {"type": "whoami"}))["conn"] == conn
                engine.publish("news", "flash")
                assert await recv(ws) == {"topic": "news", "data": "flash"}
                await ws.send("not json")
                assert await recv(ws) == {"unrouted": "not json"}
                await ws.send('{"action":"nope"}')
                assert await recv(ws) == {"unrouted": '{"action":"nope"}'}
                assert await nothing_within(ws, 0.1)
            assert await asyncio.wait_for(closed.get(), 5) == conn
            assert conn not in engine._states
        finally:
            await engine.close()

    run(main())


def test_decorator_defaults_and_duplicates() -> None:
    import pytest

    engine = Engine(threads=1)
    ch = engine.channel("test")

    @ch.action()
    def named_by_function(ctx: Context, data: Any) -> None:
        return None

    assert "named_by_function" in ch.routes
    with pytest.raises(ValueError):
        ch.add("named_by_function", named_by_function)
    with pytest.raises(ValueError):
        engine.channel("test")
    with pytest.raises(TypeError):
        ch.actions({"x": {"func": named_by_function, "bogus": 1}})
