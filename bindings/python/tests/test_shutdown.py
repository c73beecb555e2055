"""Clean shutdown: clients get 1001, pending handlers are cancelled, a
second close is harmless, and a process that never closes still exits."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any, Dict

import pytest

from conftest import close_code, connect, python_env, request, run
from switchyard import Context, Engine, EngineError


def test_close_sends_1001_cancels_pending_and_runs_disconnect_hooks() -> None:
    async def main() -> None:
        engine = Engine(threads=2)
        seen: Dict[str, Any] = {"disconnects": 0}
        started = asyncio.Event()

        def gone(ctx: Context) -> None:
            seen["disconnects"] += 1

        ch = engine.channel("test", on_disconnect=gone)

        @ch.action("hang", auth=False, exclusive=False)
        async def hang(ctx: Context, data: Any) -> Any:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                seen["cancelled"] = True
                raise

        @ch.action("ping", auth=False)
        def ping(ctx: Context, data: Any) -> Any:
            return {"pong": True}

        await engine.listen("127.0.0.1:0")
        a = await connect(engine).__aenter__()
        b = await connect(engine).__aenter__()
        assert (await request(b, {"action": "ping", "rid": 1}))["pong"]
        await a.send(json.dumps({"action": "hang", "rid": 1}))
        await asyncio.wait_for(started.wait(), 5)
        serving = asyncio.ensure_future(engine.serve_forever())
        await engine.close()
        await engine.close()  # twice is fine
        await asyncio.wait_for(serving, 1)
        assert await close_code(a) == 1001
        assert await close_code(b) == 1001
        assert seen == {"disconnects": 2, "cancelled": True}
        with pytest.raises(EngineError):
            engine.publish("t", 1)
        with pytest.raises(RuntimeError):
            engine.channel("late")

    run(main())


def test_async_with_closes_the_engine() -> None:
    async def main() -> None:
        async with Engine(threads=1) as engine:
            engine.channel("test", actions={"p": {"func": lambda c, d: 1, "auth": False}})
            await engine.listen("127.0.0.1:0")
            ws = await connect(engine).__aenter__()
            assert await request(ws, {"action": "p"}) == {"action": "p", "result": 1}
        assert await close_code(ws) == 1001

    run(main())


def test_a_process_that_never_closes_the_engine_exits() -> None:
    script = textwrap.dedent(
        """
        import asyncio, json, websockets
        from switchyard import Engine
        async def main():
            engine = Engine(threads=2)
            engine.channel("t", actions={"a": {"func": lambda c, d: 1, "auth": False}})
            addr = await engine.listen("127.0.0.1:0")
            async with websockets.connect(f"ws://{addr}/t") as ws:
                await ws.send(json.dumps({"action": "a"}))
                print(await ws.recv(), flush=True)
                await ws.send(json.dumps({"action": "a"}))  # left unanswered
        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=python_env(), capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '{"action":"a","result":1}'
