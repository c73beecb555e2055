"""The generated Python client (todos_client.py) against the running Rust
todos example: auth, awaited typed replies, error codes, events, and a
server restart with reconnect, re-auth and re-subscribe."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from conftest import ROOT, TodosServer, make_token
from todos_client import (
    Reconnect,
    SwitchyardClient,
    SwitchyardError,
    TodosChannel,
    TodosCreateOutput,
    TodosUpdatedEvent,
    TopicActions,
)

FAST = Reconnect(initial_delay=0.05, max_delay=0.3)
TOPICS = {"todos:updated": TopicActions(subscribe="subscribe", unsubscribe="unsubscribe")}


def run(coro: Callable[[], Awaitable[None]], timeout: float = 30.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro(), timeout)

    asyncio.run(bounded())


async def expect_error(aw: Awaitable[object], code: str) -> SwitchyardError:
    with pytest.raises(SwitchyardError) as info:
        await aw
    assert info.value.code == code, info.value
    return info.value


async def authed(channel: TodosChannel, user: str) -> None:
    await channel.send("auth", {"token": make_token(user)})


def test_auth_and_create_await_the_typed_reply(server: TodosServer) -> None:
    async def main() -> None:
        async with SwitchyardClient(server.url) as client:
            todos = client.channel("todos")
            assert await todos.send("whoami") == {"userId": None}
            assert await todos.send("auth", {"token": make_token("alice")}) == {
                "ok": True,
                "userId": "alice",
            }
            reply: TodosCreateOutput = await todos.send("create", {"text": "Buy milk"})
            assert reply == {"todo": {"id": 1, "text": "Buy milk", "done": False, "owner": "alice"}}
            # Concurrent requests of one action are matched by rid.
            replies = await asyncio.gather(
                *(todos.send("create", {"text": f"item {i}"}) for i in range(20))
            )
            assert [r["todo"]["text"] for r in replies] == [f"item {i}" for i in range(20)]
            assert (await todos.send("toggle", {"id": 1}))["todo"]["done"] is True
            assert len((await todos.send("list"))["todos"]) == 21
            assert await todos.send("delete", {"id": 2}) == {"deleted": 2}
            assert await todos.send("logout") == {"ok": True}

    run(main)


def test_errors_carry_their_code(server: TodosServer) -> None:
    async def main() -> None:
        async with SwitchyardClient(server.url) as client:
            todos = client.channel("todos")
            e = await expect_error(todos.send("create", {"text": "x"}), "unauthorized")
            assert e.action == "create" and isinstance(e.rid, int)
            await expect_error(todos.send("auth", {"token": "nope"}), "invalid_token")
            await authed(todos, "alice")
            e = await expect_error(todos.send("create", {"text": ""}), "invalid_input")
            assert "text" in e.message
            await expect_error(todos.send("toggle", {"id": 999}), "not_found")
            server.pause()
            await asyncio.sleep(0.1)
            try:
                await expect_error(todos.send("list", timeout=0.3), "request_timeout")
            finally:
                server.resume()
            assert len((await todos.send("list"))["todos"]) == 0
        await expect_error(todos.send("whoami"), "closed")

    run(main)


def test_events_from_another_connection(server: TodosServer) -> None:
    async def main() -> None:
        async with SwitchyardClient(server.url) as alice, SwitchyardClient(server.url) as bob:
            a = alice.channel("todos", on_open=lambda c: authed(c, "alice"), topics=TOPICS)
            events: asyncio.Queue[TodosUpdatedEvent] = asyncio.Queue()
            sub = a.subscribe("todos:updated", events.put_nowait)
            await sub.ready()
            b = bob.channel("todos", on_open=lambda c: authed(c, "bob"))
            made = await b.send("create", {"text": "from bob"})
            ev = await asyncio.wait_for(events.get(), 5)
            assert ev == {"event": "created", "todo": made["todo"]}
            await b.send("delete", {"id": made["todo"]["id"]})
            ev = await asyncio.wait_for(events.get(), 5)
            assert ev["event"] == "deleted"
            if ev["event"] == "deleted":
                assert ev["id"] == made["todo"]["id"]
            sub()  # the last listener: sends `unsubscribe`
            await a.send("whoami")
            await b.send("create", {"text": "nobody listens"})
            await a.send("whoami")
            await asyncio.sleep(0.1)
            assert events.empty()

    run(main)


def test_restart_reconnects_reauths_and_resubscribes() -> None:
    server = TodosServer()
    port = server.port

    async def main() -> None:
        nonlocal server
        opens = 0
        statuses: list[str] = []

        async def on_open(c: TodosChannel) -> None:
            nonlocal opens
            opens += 1
            await authed(c, "alice")

        async with SwitchyardClient(server.url, reconnect=FAST) as alice:
            a = alice.channel(
                "todos", on_open=on_open, topics=TOPICS, on_status=statuses.append
            )
            events: asyncio.Queue[TodosUpdatedEvent] = asyncio.Queue()
            sub = a.subscribe("todos:updated", events.put_nowait)
            await sub.ready()
            assert opens == 1

            # In flight when the server dies: rejected with `disconnected`.
            server.pause()
            await asyncio.sleep(0.1)
            in_flight = asyncio.ensure_future(a.send("list"))
            await asyncio.sleep(0.1)
            server.stop(signal.SIGKILL)
            await expect_error(in_flight, "disconnected")

            # Sent while disconnected: waits for the reconnect.
            queued = asyncio.ensure_future(a.send("whoami", timeout=20))
            await asyncio.sleep(0.2)
            server = TodosServer(port)
            assert await queued == {"userId": "alice"}  # re-authenticated
            assert opens == 2
            async with SwitchyardClient(server.url) as bob:
                b = bob.channel("todos", on_open=lambda c: authed(c, "bob"))
                made = await b.send("create", {"text": "after the restart"})
                assert made["todo"]["id"] == 1
                ev = await asyncio.wait_for(events.get(), 5)  # re-subscribed
                assert ev == {"event": "created", "todo": made["todo"]}
            assert statuses[:2] == ["open", "reconnecting"] and statuses[-1] == "open"

    try:
        run(main, 60)
    finally:
        server.resume()
        server.stop()


def test_generated_module_passes_mypy_strict() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "todos_client.py"],
        cwd=ROOT / "clients" / "python",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_typed_use_passes_mypy_and_misuse_fails(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text(
        "from todos_client import SwitchyardClient, Todo\n"
        "async def main() -> None:\n"
        "    todos = SwitchyardClient('ws://127.0.0.1:1').channel('todos')\n"
        "    reply = await todos.send('create', {'text': 'x'})\n"
        "    todo: Todo = reply['todo']\n"
        "    n: int = todo['id']\n"
        "    print(n)\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from todos_client import SwitchyardClient\n"
        "async def main() -> None:\n"
        "    todos = SwitchyardClient('ws://127.0.0.1:1').channel('todos')\n"
        "    await todos.send('creat', {'text': 'x'})\n"
        "    await todos.send('create', {'text': 1})\n"
        "    reply = await todos.send('create', {'text': 'x'})\n"
        "    s: str = reply['todo']['id']\n"
    )
    env_path = str(ROOT / "clients" / "python")
    for path, ok in [(good, True), (bad, False)]:
        out = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "MYPYPATH": env_path},
        )
        assert (out.returncode == 0) == ok, out.stdout + out.stderr
        if not ok:
            text = out.stdout
            assert "No overload variant of \"send\"" in text, text
            assert text.count("error:") >= 3, text


def gen_binary() -> str:
    path = os.environ.get("SWITCHYARD_GEN_BIN") or str(ROOT / "target" / "debug" / "switchyard-gen")
    if not Path(path).exists():
        pytest.fail(f"{path} does not exist: run `cargo build -p switchyard-gen`")
    return path


@pytest.mark.parametrize("channel", [None, "admin"])
def test_other_manifest_shapes_pass_mypy_strict(tmp_path: Path, channel: str | None) -> None:
    """Two channels, several routing keys, non-object replies, $ref, enums
    with null, member names that are not identifiers; and one channel with a
    single action and topic (no overloads)."""
    out = tmp_path / "sink_client.py"
    args = [gen_binary(), "--manifest", str(ROOT / "clients/fixtures/kitchen-sink.manifest.json")]
    if channel is not None:
        args += ["--channel", channel]
    subprocess.run([*args, "--python", str(out)], check=True, timeout=60, capture_output=True)
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
