"""Async handlers replying out of order, matched by rid; many requests in
flight at once."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any, Dict

from conftest import connect, recv, recv_n, request, run
from switchyard import Context, Engine


def make_engine(**kw: Any) -> Engine:
    engine = Engine(threads=2, **kw)
    ch = engine.channel("test")

    @ch.action("sleep", auth=False, exclusive=False)
    async def sleep(ctx: Context, data: Any) -> Any:
        await asyncio.sleep(data["ms"] / 1000)
        return {"slept": data["ms"]}

    @ch.action("instant", auth=False, exclusive=False)
    async def instant(ctx: Context, data: Any) -> Any:
        if data.get("fail"):
            raise ValueError("x")
        return {"instant": True}

    @ch.action("sync", auth=False, exclusive=False)
    def sync(ctx: Context, data: Any) -> Any:
        return data["n"]

    @ch.action("future", auth=False, exclusive=False)
    def future(ctx: Context, data: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, fut.set_result, {"from": "future"})
        return fut

    return engine


def test_slow_handlers_reply_in_completion_order_matched_by_rid() -> None:
    async def main() -> None:
        engine = make_engine()
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                delays = {1: 300, 2: 200, 3: 100}
                for rid, ms in delays.items():
                    await ws.send(json.dumps({"action": "sleep", "rid": rid, "ms": ms}))
                await ws.send(json.dumps({"action": "sync", "rid": 4, "n": 7}))
                got = await recv_n(ws, 4)
                assert [r["rid"] for r in got] == [4, 3, 2, 1]
                assert got[0] == {"action": "sync", "rid": 4, "result": 7}
                for r in got[1:]:
                    assert r == {"action": "sleep", "rid": r["rid"], "slept": delays[r["rid"]]}
                r = await request(ws, {"action": "future", "rid": "f"})
                assert r == {"action": "future", "rid": "f", "from": "future"}
        finally:
            await engine.close()

    run(main())


def test_a_thousand_concurrent_requests() -> None:
    async def main() -> None:
        engine = make_engine()
        await engine.listen("127.0.0.1:0")
        try:
            conns = [await connect(engine).__aenter__() for _ in range(10)]
            rng = random.Random(7)

            async def client(ws: Any, base: int) -> None:
                expected: Dict[int, Any] = {}
                for i in range(100):
                    rid = base + i
                    if i % 2:
                        ms = rng.randint(0, 50)
                        msg = {"action": "sleep", "rid": rid, "ms": ms}
                        expected[rid] = {"action": "sleep", "rid": rid, "slept": ms}
                    else:
                        msg = {"action": "sync", "rid": rid, "n": rid}
                        expected[rid] = {"action": "sync", "rid": rid, "result": rid}
                    await ws.send(json.dumps(msg))
                got = {}
                for _ in range(100):
                    r = await recv(ws)
                    got[r["rid"]] = r
                assert got == expected

            await asyncio.gather(*(client(ws, k * 1000) for k, ws in enumerate(conns)))
            for ws in conns:
                await ws.close()
            stats = engine.stats()
            assert stats["messages_in"] >= 1000
        finally:
            await engine.close()

    run(main())


def test_eager_tasks_on_and_off() -> None:
    async def main() -> None:
        for eager in (True, False):
            await one(eager)

    async def one(eager: bool) -> None:
        engine = make_engine(eager_tasks=eager)
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                for rid in range(3):
                    await ws.send(json.dumps({"action": "sleep", "rid": rid, "ms": 0}))
                assert sorted(r["rid"] for r in await recv_n(ws, 3)) == [0, 1, 2]
                assert (await request(ws, {"action": "instant", "rid": 4}))["instant"] is True
                r = await request(ws, {"action": "instant", "rid": 5, "fail": True})
                assert r["error"]["code"] == "internal"
        finally:
            await engine.close()

    run(main())


def test_asyncio_timeout_as_first_statement() -> None:
    """A handler may use asyncio.timeout (which needs a current task) first."""
    import sys

    if sys.version_info < (3, 11):
        return

    async def main() -> None:
        engine = Engine(threads=1)
        ch = engine.channel("test")

        @ch.action("t", auth=False)
        async def t(ctx: Context, data: Any) -> Any:
            async with asyncio.timeout(1):  # type: ignore[attr-defined,unused-ignore]
                await asyncio.sleep(0)
            return {"ok": True}

        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                r = await request(ws, {"action": "t", "rid": 1})
                assert r == {"action": "t", "rid": 1, "ok": True}, r
        finally:
            await engine.close()

    run(main())
