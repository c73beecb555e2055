"""Cancellation: a client that leaves mid-request cancels its handler's
task; a late reply is harmless."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List

from conftest import connect, request, run
from switchyard import Context, Engine


def test_client_leaving_cancels_the_handler_task() -> None:
    async def main() -> None:
        engine = Engine(threads=1)
        ch = engine.channel("test")
        started = asyncio.Event()
        seen: Dict[str, Any] = {}
        contexts: List[Context] = []

        @ch.action("wait", auth=False, exclusive=False)
        async def wait(ctx: Context, data: Any) -> Any:
            contexts.append(ctx)
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                seen["cancelled"] = ctx.cancelled
                raise
            return {"never": True}

        @ch.action("stubborn", auth=False, exclusive=False)
        async def stubborn(ctx: Context, data: Any) -> Any:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                await asyncio.sleep(0.05)
                seen["stubborn"] = ctx.cancelled
                ctx.send({"late": "push"})  # goes nowhere, raises nothing
                return {"late": "reply"}  # stale: dropped
            return None

        @ch.action("ping", auth=False, exclusive=False)
        def ping(ctx: Context, data: Any) -> Any:
            return {"pong": True}

        await engine.listen("127.0.0.1:0")
        try:
            for action in ("wait", "stubborn"):
                started.clear()
                ws = await connect(engine).__aenter__()
                await ws.send(json.dumps({"action": action, "rid": 1}))
                await asyncio.wait_for(started.wait(), 5)
                assert len(engine._pending) == 1
                await ws.close()
                for _ in range(200):
                    if not engine._pending and ("cancelled" in seen if action == "wait" else "stubborn" in seen):
                        break
                    await asyncio.sleep(0.01)
                assert not engine._pending
            assert seen == {"cancelled": True, "stubborn": True}
            assert contexts[0].cancelled
            # The engine still serves others.
            async with connect(engine) as ws:
                assert (await request(ws, {"action": "ping", "rid": 2}))["pong"] is True
        finally:
            await engine.close()

    run(main())


def test_a_handler_past_the_reply_timeout_is_cancelled() -> None:
    async def main() -> None:
        engine = Engine(threads=1, reply_timeout_ms=100)
        ch = engine.channel("test")
        outcome: asyncio.Queue[str] = asyncio.Queue()

        @ch.action("slow", auth=False)
        async def slow(ctx: Context, data: Any) -> Any:
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                outcome.put_nowait(f"cancelled {ctx.cancelled}")
                raise
            outcome.put_nowait("finished")

        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                r = await request(ws, {"action": "slow", "rid": 1})
                assert r["error"]["code"] == "timeout"
                assert await asyncio.wait_for(outcome.get(), 5) == "cancelled True"
                assert not engine._pending
        finally:
            await engine.close()

    run(main())


def test_a_handler_that_cancels_itself_is_answered_internal() -> None:
    async def main() -> None:
        engine = Engine()
        ch = engine.channel("test")

        @ch.action("quit", auth=False)
        async def quit_(ctx: Context, data: Any) -> Any:
            await asyncio.sleep(0)
            raise asyncio.CancelledError()

        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                r = await request(ws, {"action": "quit", "rid": 1})
                assert r["error"] == {"code": "internal", "message": "internal error"}
                assert not engine._pending
        finally:
            await engine.close()

    run(main())
