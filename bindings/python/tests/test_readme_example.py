"""The README's 15-line example runs as shown (on a free port). Keep it in
step with bindings/python/README.md and the top-level README."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap

from conftest import close_code, connect, python_env, request, run

EXAMPLE = textwrap.dedent(
    '''
    import asyncio
    from switchyard import Engine, SwitchyardError

    engine = Engine(threads=2)
    todos = engine.channel("todos")                     # ws://HOST:PORT/todos

    @todos.action("login", auth=False)                  # public, hence exclusive
    def login(ctx, data):
        ctx.set_session({"user": data["name"]})
        return {"ok": True}

    @todos.action("create")                             # needs a session
    async def create(ctx, data):
        if not data.get("text"):
            raise SwitchyardError("invalid_input", "`text` is required")
        ctx.publish("todos:updated", {"event": "created", "text": data["text"]})
        return {"owner": ctx.session["user"]}

    asyncio.run(engine.run("127.0.0.1:9001"))
    '''
)


def test_the_readme_example() -> None:
    lines = [ln for ln in EXAMPLE.strip().splitlines() if ln.strip()]
    assert len(lines) <= 16
    script = EXAMPLE.replace('asyncio.run(engine.run("127.0.0.1:9001"))', "")
    ns: dict = {}
    exec(compile(script, "readme", "exec"), ns)
    engine = ns["engine"]

    async def main() -> None:
        addr = await engine.listen("127.0.0.1:0")
        try:
            async with connect(f"ws://{addr}/todos") as ws:
                r = await request(ws, {"action": "create", "rid": 1, "text": "x"})
                assert r["error"]["code"] == "unauthorized"
                # Pipelined: login, then create at once.
                await ws.send(json.dumps({"action": "login", "rid": 2, "name": "ann"}))
                await ws.send(json.dumps({"action": "create", "rid": 3, "text": "milk"}))
                from conftest import recv_n

                got = await recv_n(ws, 2)
                assert got == [{"action": "login", "rid": 2, "ok": True}, {"action": "create", "rid": 3, "owner": "ann"}]
                r = await request(ws, {"action": "create", "rid": 4})
                assert r["error"] == {"code": "invalid_input", "message": "`text` is required"}
        finally:
            await engine.close()

    run(main())


def test_engine_run_stops_on_sigterm() -> None:
    script = EXAMPLE.replace("127.0.0.1:9001", "127.0.0.1:0").replace(
        "asyncio.run(engine.run(", "import sys; print('ready', flush=True); asyncio.run(engine.run("
    )
    # Print the address once listening, by wrapping listen.
    script = script.replace(
        "engine = Engine(threads=2)",
        "engine = Engine(threads=2)\n_l = engine.listen\n"
        "async def _listen(a):\n    r = await _l(a)\n    print(r, flush=True)\n    return r\nengine.listen = _listen",
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        addr = proc.stdout.readline().strip()

        async def main() -> int:
            ws = await connect(f"ws://{addr}/todos").__aenter__()
            assert (await request(ws, {"action": "login", "rid": 1, "name": "a"}))["ok"]
            os.kill(proc.pid, signal.SIGTERM)
            return await close_code(ws)

        assert run(main()) == 1001
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
