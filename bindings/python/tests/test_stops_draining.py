"""A host that stops draining the completion queue: with a small queue the
engine pauses reading (nothing dropped, no crash) and answers every request
once the host drains again."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Dict

from conftest import connect, recv, run
from switchyard import Context, Engine

N = 2000


def test_host_that_stops_draining_gets_every_request_answered_once() -> None:
    async def main() -> None:
        engine = Engine(threads=1, queue_capacity=32, queue_low_watermark=8, max_inflight_per_connection=1000)
        ch = engine.channel("sd")
        blocked = {"done": False}

        @ch.action("echo", auth=False, exclusive=False)
        def echo(ctx: Context, data: Any) -> Any:
            if not blocked["done"]:
                # The host stops draining: the asyncio loop is blocked 300 ms.
                blocked["done"] = True
                time.sleep(0.3)
            return {"n": data["n"]}

        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine, "/sd") as ws:
                for i in range(N):
                    await ws.send(json.dumps({"action": "echo", "rid": i, "n": i}))
                counts: Dict[int, int] = {}
                for _ in range(N):
                    r = await recv(ws, timeout=10.0)
                    assert "error" not in r, r
                    assert r["n"] == r["rid"], r
                    counts[r["rid"]] = counts.get(r["rid"], 0) + 1
                # No stray duplicate arrives afterwards.
                try:
                    extra = await asyncio.wait_for(ws.recv(), 0.1)
                    raise AssertionError(f"unexpected extra frame {extra!r}")
                except asyncio.TimeoutError:
                    pass
                assert counts == {i: 1 for i in range(N)}
                assert blocked["done"]
                s = engine.stats()
                assert s["events_dropped"] == 0, s
                assert s["errors_timeout"] == 0, s
                assert s["errors_internal"] + s["errors_other"] + s["errors_rate_limited"] == 0, s
                assert s["slow_consumer_closes"] == 0, s
                assert s["messages_in"] >= N, s
                assert s["connections_open"] == 1, s
        finally:
            await engine.close()

    run(main(), timeout=20.0)
