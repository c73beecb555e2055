"""Pub/sub through the Python host: fan-out, exclude-sender, unsubscribe,
engine-wide publish."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import connect, nothing_within, recv, recv_n, request, run
from switchyard import Context, Engine


def make_engine() -> Engine:
    engine = Engine(threads=2)
    ch = engine.channel("test")

    @ch.action("sub", auth=False, exclusive=False)
    def sub(ctx: Context, data: Any) -> None:
        ctx.subscribe(data["topic"])

    @ch.action("unsub", auth=False, exclusive=False)
    def unsub(ctx: Context, data: Any) -> None:
        ctx.unsubscribe(data["topic"])

    @ch.action("pub", auth=False, exclusive=False)
    def pub(ctx: Context, data: Any) -> None:
        ctx.publish(data["topic"], data["data"])

    @ch.action("pub_others", auth=False, exclusive=False)
    async def pub_others(ctx: Context, data: Any) -> None:
        ctx.publish_except(data["topic"], data["data"])

    return engine


def test_fan_out_to_every_subscriber_in_order() -> None:
    async def main() -> None:
        engine = make_engine()
        await engine.listen("127.0.0.1:0")
        try:
            clients = [await connect(engine).__aenter__() for _ in range(20)]
            for i, ws in enumerate(clients):
                assert await request(ws, {"action": "sub", "rid": i, "topic": "room"}) == {"action": "sub", "rid": i}
            publisher = clients[0]
            for k in range(10):
                await publisher.send(f'{{"action":"pub","rid":{100 + k},"topic":"room","data":{{"k":{k},"s":"é"}}}}')
            # The publisher gets its acks and the events (it subscribed).
            got = await recv_n(publisher, 20)
            events = [g for g in got if "topic" in g]
            acks = [g for g in got if "topic" not in g]
            assert [e["data"]["k"] for e in events] == list(range(10))
            assert [a["rid"] for a in acks] == list(range(100, 110))
            for ws in clients[1:]:
                evs = await recv_n(ws, 10)
                assert evs == [{"topic": "room", "data": {"k": k, "s": "é"}} for k in range(10)]
            # Unsubscribed clients get nothing more; others on another topic neither.
            await request(clients[1], {"action": "unsub", "rid": 1, "topic": "room"})
            await request(clients[0], {"action": "pub", "rid": 2, "topic": "other", "data": 1})
            await request(clients[2], {"action": "pub", "rid": 3, "topic": "room", "data": "x"})
            assert await recv(clients[3]) == {"topic": "room", "data": "x"}
            assert await nothing_within(clients[1], 0.2)
            for ws in clients:
                await ws.close()
        finally:
            await engine.close()

    run(main())


def test_publish_except_skips_the_sender_and_engine_publish_reaches_all() -> None:
    async def main() -> None:
        engine = make_engine()
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as a, connect(engine) as b:
                for ws in (a, b):
                    await request(ws, {"action": "sub", "rid": 0, "topic": "t"})
                assert await request(a, {"action": "pub_others", "rid": 1, "topic": "t", "data": [1]}) == {"action": "pub_others", "rid": 1}
                assert await recv(b) == {"topic": "t", "data": [1]}
                assert await nothing_within(a, 0.2)
                engine.publish("t", {"from": "engine"})
                assert await recv(a) == {"topic": "t", "data": {"from": "engine"}}
                assert await recv(b) == {"topic": "t", "data": {"from": "engine"}}
                r = await request(a, {"action": "sub", "rid": 2, "topic": "x" * 300})
                assert r["error"]["code"] == "internal"
        finally:
            await engine.close()

    run(main())


def test_calls_on_an_ended_connection_return_false() -> None:
    """A connection that has ended takes nothing: the calls that post to it
    say so with ``False`` instead of posting into the void."""

    async def main() -> None:
        engine = Engine(threads=1)
        opened: list[Context] = []
        gone = asyncio.Event()

        def hello(ctx: Context) -> None:
            opened.append(ctx)

        def bye(ctx: Context) -> None:
            gone.set()

        engine.channel("test", on_connect=hello, on_disconnect=bye)
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                while not opened:
                    await asyncio.sleep(0.01)
                ctx = opened[0]
                assert engine.send(ctx.connection_id, {"n": 1}) is True
                assert await recv(ws) == {"n": 1}
                assert ctx.subscribe("room") is True
            await asyncio.wait_for(gone.wait(), 10)
            assert engine.send(ctx.connection_id, {"n": 2}) is False
            assert ctx.subscribe("room") is False
            assert ctx.unsubscribe("room") is False
            assert ctx.set_session({"u": 1}) is False
            assert ctx.clear_session() is False
            assert ctx.close() is False
        finally:
            await engine.close()

    run(main())
