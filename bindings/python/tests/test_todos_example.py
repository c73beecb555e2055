"""examples/todos.py end to end, as EXAMPLE-TODOS.md describes it (the same
checks as engine/tests/todos_example.rs makes of the Rust example).

``TODOS_COMMAND="target/release/examples/todos" pytest tests/test_todos_example.py``
runs the same tests against another implementation, to check parity."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from conftest import EXAMPLES, close_code, connect, python_env, recv, recv_n, request, run

sys.path.insert(0, str(EXAMPLES))
from todos import DEFAULT_SECRET, sign  # noqa: E402

COMMAND = shlex.split(os.environ.get("TODOS_COMMAND", "")) or [sys.executable, str(EXAMPLES / "todos.py")]
LINE = re.compile(r"^listening on ws://(127\.0\.0\.\d+):(\d+)/todos$")


class Server:
    def __init__(self, args: List[str], env: Optional[Dict[str, str]] = None) -> None:
        e = python_env()
        e.pop("SWITCHYARD_ADDR", None)
        e.pop("SWITCHYARD_JWT_SECRET", None)
        e.update(env or {})
        self.proc = subprocess.Popen(
            [*COMMAND, *args],
            env=e,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.first_line = self.proc.stdout.readline().rstrip("\n")
        m = LINE.match(self.first_line)
        assert m, f"first line {self.first_line!r}; stderr: {self.stderr_now()}"
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = f"ws://{self.host}:{self.port}/todos"

    def stderr_now(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def stop(self, sig: int = signal.SIGTERM) -> Tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=15)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=5)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server(["--addr", "127.0.0.1:0"])
    yield s
    s.kill()


def token(user: str, secret: str = DEFAULT_SECRET, ttl: int = 3600) -> str:
    return sign({"sub": user, "exp": int(time.time()) + ttl}, secret)


def todo(i: int, text: str, done: bool, owner: str) -> Dict[str, Any]:
    return {"id": i, "text": text, "done": done, "owner": owner}


async def auth(ws: Any, user: str) -> None:
    r = await request(ws, {"action": "auth", "rid": "a", "token": token(user)})
    assert r == {"action": "auth", "rid": "a", "ok": True, "userId": user}


async def expect_error(ws: Any, req: Dict[str, Any], code: str) -> str:
    r = await request(ws, req)
    assert r.get("action") == req.get("action") and r.get("rid") == req.get("rid"), r
    assert r["error"]["code"] == code, f"{req} got {r}"
    assert set(r) == {"action", "rid", "error"} - ({"rid"} if "rid" not in req else set())
    return str(r["error"]["message"])


def test_prints_one_line_then_sigterm_closes_clients_with_1001_and_exits_0(server: Server) -> None:
    async def main() -> Tuple[int, int]:
        a = await connect(server.url).__aenter__()
        b = await connect(server.url).__aenter__()
        assert await request(a, {"action": "whoami", "rid": 1}) == {"action": "whoami", "rid": 1, "userId": None}
        server.proc.send_signal(signal.SIGTERM)
        return await close_code(a), await close_code(b)

    assert server.port != 0
    assert run(main()) == (1001, 1001)
    code, out, err = server.stop()
    assert code == 0, err
    assert out == "", "exactly one line on stdout"
    assert "SIGTERM" in err


def test_serves_the_manifest(server: Server) -> None:
    import urllib.request

    with urllib.request.urlopen(f"http://{server.host}:{server.port}/switchyard/manifest.json", timeout=10) as resp:
        manifest = json.loads(resp.read())
    (channel,) = manifest["channels"]
    assert channel["name"] == "todos" and channel["path"] == "/todos"
    routes = {r["name"]: r for r in channel["routes"]}
    assert set(routes) == {"auth", "whoami", "logout", "create", "list", "toggle", "delete", "subscribe", "unsubscribe"}
    assert routes["create"]["input"]["properties"]["text"]["maxLength"] == 500
    assert not routes["auth"]["auth"] and routes["create"]["auth"]


def test_sigint_stops_it_too(server: Server) -> None:
    async def main() -> int:
        ws = await connect(server.url).__aenter__()
        server.proc.send_signal(signal.SIGINT)
        return await close_code(ws)

    assert run(main()) == 1001
    code, out, err = server.stop(signal.SIGINT)
    assert code == 0, err
    assert out == ""


def test_switchyard_addr_is_honoured_and_the_flag_wins() -> None:
    s = Server([], {"SWITCHYARD_ADDR": "127.0.0.2:0"})
    try:
        assert s.host == "127.0.0.2"
    finally:
        s.kill()
    s = Server(["--addr", "127.0.0.3:0"], {"SWITCHYARD_ADDR": "127.0.0.2:0"})
    try:
        assert s.host == "127.0.0.3"
        r = run(_whoami(s.url))
        assert r["userId"] is None
    finally:
        s.kill()


async def _whoami(url: str) -> Dict[str, Any]:
    async with connect(url) as ws:
        return await request(ws, {"action": "whoami", "rid": 1})


def test_a_bad_address_or_argument_is_an_error() -> None:
    for args in (["--addr", "not an address"], ["--bogus"], ["--addr"]):
        e = python_env()
        e.pop("SWITCHYARD_ADDR", None)
        out = subprocess.run(
            [*COMMAND, *args],
            env=e, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
        )
        assert out.returncode != 0, args
        assert out.stdout == "", args
        assert out.stderr, args


def test_subscribers_get_every_change_as_an_event(server: Server) -> None:
    async def main() -> None:
        alice, bob, carol = [await connect(server.url).__aenter__() for _ in range(3)]
        for ws, user in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
            await auth(ws, user)
        for ws in (alice, bob):
            assert await request(ws, {"action": "subscribe", "rid": 1}) == {"action": "subscribe", "rid": 1}
        await alice.send(json.dumps({"action": "create", "rid": 2, "text": "Buy milk"}))
        milk = todo(1, "Buy milk", False, "alice")
        got = await recv_n(alice, 2)
        got.sort(key=lambda v: "topic" in v)
        assert got[0] == {"action": "create", "rid": 2, "todo": milk}
        created = {"topic": "todos:updated", "data": {"event": "created", "todo": milk}}
        assert got[1] == created
        raw = await asyncio.wait_for(bob.recv(), 10)
        assert raw == '{"topic":"todos:updated","data":{"event":"created","todo":{"id":1,"text":"Buy milk","done":false,"owner":"alice"}}}'

        r = await request(carol, {"action": "toggle", "rid": 3, "id": 1})
        done = todo(1, "Buy milk", True, "alice")
        assert r["todo"] == done
        updated = {"topic": "todos:updated", "data": {"event": "updated", "todo": done}}
        assert await recv(alice) == updated
        assert await recv(bob) == updated

        assert await request(bob, {"action": "unsubscribe", "rid": 4}) == {"action": "unsubscribe", "rid": 4}
        r = await request(carol, {"action": "delete", "rid": 5, "id": 1})
        assert r == {"action": "delete", "rid": 5, "deleted": 1}
        assert await recv(alice) == {"topic": "todos:updated", "data": {"event": "deleted", "id": 1}}
        r = await request(bob, {"action": "whoami", "rid": 6})
        assert r == {"action": "whoami", "rid": 6, "userId": "bob"}, "no event came first"

        await expect_error(carol, {"action": "toggle", "rid": 8, "id": 99}, "not_found")
        assert await request(alice, {"action": "list", "rid": 7}) == {"action": "list", "rid": 7, "todos": []}
        anon = await connect(server.url).__aenter__()
        await expect_error(anon, {"action": "subscribe", "rid": 9}, "unauthorized")

    run(main())


def test_session_routes_need_auth_and_public_ones_do_not(server: Server) -> None:
    async def main() -> None:
        async with connect(server.url) as ws:
            assert await request(ws, {"action": "whoami", "rid": 1}) == {"action": "whoami", "rid": 1, "userId": None}
            for rid, action in enumerate(["create", "list", "toggle", "delete", "subscribe", "unsubscribe"]):
                await expect_error(ws, {"action": action, "rid": rid, "text": "x", "id": 1}, "unauthorized")
            assert await request(ws, {"action": "logout", "rid": 9}) == {"action": "logout", "rid": 9, "ok": True}

    run(main())


def test_bad_and_expired_tokens_are_invalid_token(server: Server) -> None:
    now = int(time.time())
    good = token("alice")
    head, sig = good.rsplit(".", 1)
    bad = [
        "not a jwt",
        sign({"sub": "mallory", "exp": now + 3600}, "another-secret"),
        f"{head}.{'B' if sig.startswith('A') else 'A'}{sig[1:]}",
        sign({"sub": "alice", "exp": now - 60}, DEFAULT_SECRET),
        sign({"sub": "alice", "exp": now - 2}, DEFAULT_SECRET),
        sign({"sub": "alice", "exp": now - 60.5}, DEFAULT_SECRET),
        sign({"sub": "alice", "exp": -1}, DEFAULT_SECRET),
        sign({"sub": "alice", "exp": "tomorrow"}, DEFAULT_SECRET),
        sign({"exp": now + 3600}, DEFAULT_SECRET),
    ]

    async def main() -> None:
        async with connect(server.url) as ws:
            for rid, t in enumerate(bad):
                await expect_error(ws, {"action": "auth", "rid": rid, "token": t}, "invalid_token")
                r = await request(ws, {"action": "whoami", "rid": "w"})
                assert r["userId"] is None, f"after token {rid}"
            await expect_error(ws, {"action": "create", "rid": 1, "text": "x"}, "unauthorized")
            for req in ({"action": "auth", "rid": 20}, {"action": "auth", "rid": 21, "token": 5}):
                message = await expect_error(ws, req, "invalid_input")
                assert "token" in message

    run(main())


def test_a_valid_token_sets_the_session_and_logout_ends_it(server: Server) -> None:
    async def main() -> None:
        async with connect(server.url) as ws:
            r = await request(ws, {"action": "auth", "rid": 1, "token": token("alice")})
            assert r == {"action": "auth", "rid": 1, "ok": True, "userId": "alice"}
            assert await request(ws, {"action": "whoami", "rid": 2}) == {"action": "whoami", "rid": 2, "userId": "alice"}
            no_exp = sign({"sub": "bob"}, DEFAULT_SECRET)
            r = await request(ws, {"action": "auth", "rid": 3, "token": no_exp})
            assert r == {"action": "auth", "rid": 3, "ok": True, "userId": "bob"}
            # Pipelined: logout then whoami then create, without waiting.
            for msg in ({"action": "logout", "rid": 4}, {"action": "whoami", "rid": 5}, {"action": "create", "rid": 6, "text": "b"}):
                await ws.send(json.dumps(msg))
            got = await recv_n(ws, 3)
            assert got[0] == {"action": "logout", "rid": 4, "ok": True}
            assert got[1] == {"action": "whoami", "rid": 5, "userId": None}
            assert got[2]["error"]["code"] == "unauthorized"
            # Pipelined auth then create sees the new session.
            await ws.send(json.dumps({"action": "auth", "rid": 7, "token": token("carol")}))
            await ws.send(json.dumps({"action": "create", "rid": 8, "text": "c"}))
            got = await recv_n(ws, 2)
            assert got[1] == {"action": "create", "rid": 8, "todo": todo(1, "c", False, "carol")}

    run(main())


def test_the_demo_token_on_stderr_is_valid_for_a_day(server: Server) -> None:
    assert server.proc.stderr is not None
    lines = []
    deadline = time.time() + 10
    while time.time() < deadline:
        line = server.proc.stderr.readline()
        lines.append(line)
        if "Ctrl-C" in line:
            break
    stderr = "".join(lines)
    tokens = [w for w in re.split(r"[^A-Za-z0-9\-_.]", stderr) if w.startswith("eyJ") and w.count(".") == 2]
    assert tokens, stderr
    assert server.url in stderr
    from todos import verify, _unb64url

    assert verify(tokens[0], DEFAULT_SECRET) == "demo"
    claims = json.loads(_unb64url(tokens[0].split(".")[1]))
    assert abs(claims["exp"] - (time.time() + 24 * 3600)) <= 60

    async def main() -> None:
        async with connect(server.url) as ws:
            r = await request(ws, {"action": "auth", "rid": 1, "token": tokens[0]})
            assert r == {"action": "auth", "rid": 1, "ok": True, "userId": "demo"}

    run(main())


def test_the_secret_comes_from_switchyard_jwt_secret() -> None:
    s = Server(["--addr", "127.0.0.1:0"], {"SWITCHYARD_JWT_SECRET": "s3cret"})

    async def main() -> None:
        async with connect(s.url) as ws:
            await expect_error(ws, {"action": "auth", "rid": 1, "token": token("alice")}, "invalid_token")
            r = await request(ws, {"action": "auth", "rid": 2, "token": token("alice", "s3cret", 60)})
            assert r == {"action": "auth", "rid": 2, "ok": True, "userId": "alice"}

    try:
        run(main())
    finally:
        s.kill()


def test_create_list_toggle_delete(server: Server) -> None:
    async def main() -> None:
        ws = await connect(server.url).__aenter__()
        await auth(ws, "alice")
        await ws.send(json.dumps({"action": "create", "rid": 1, "text": "Buy milk"}))
        raw = await asyncio.wait_for(ws.recv(), 10)
        assert raw == '{"action":"create","rid":1,"todo":{"id":1,"text":"Buy milk","done":false,"owner":"alice"}}'
        r = await request(ws, {"action": "create", "rid": 2, "text": "Walk the dog"})
        assert r == {"action": "create", "rid": 2, "todo": todo(2, "Walk the dog", False, "alice")}
        bob = await connect(server.url).__aenter__()
        await auth(bob, "bob")
        r = await request(bob, {"action": "create", "rid": 3, "text": "Call mum"})
        assert r["todo"] == todo(3, "Call mum", False, "bob")
        r = await request(ws, {"action": "list", "rid": 4})
        assert r == {"action": "list", "rid": 4, "todos": [
            todo(1, "Buy milk", False, "alice"), todo(2, "Walk the dog", False, "alice"), todo(3, "Call mum", False, "bob")]}
        r = await request(ws, {"action": "toggle", "rid": 5, "id": 2})
        assert r == {"action": "toggle", "rid": 5, "todo": todo(2, "Walk the dog", True, "alice")}
        assert (await request(bob, {"action": "list", "rid": 6}))["todos"][1]["done"] is True
        r = await request(bob, {"action": "toggle", "rid": 7, "id": 2})
        assert r["todo"] == todo(2, "Walk the dog", False, "alice")
        assert "99" in await expect_error(ws, {"action": "toggle", "rid": 8, "id": 99}, "not_found")
        for rid, bad_id in enumerate(["2", None, -1, 1.5, {"id": 2}, True]):
            assert "id" in await expect_error(ws, {"action": "toggle", "rid": rid, "id": bad_id}, "invalid_input")
        assert "id" in await expect_error(ws, {"action": "toggle", "rid": 9}, "invalid_input")
        assert await request(ws, {"action": "delete", "rid": 10, "id": 1}) == {"action": "delete", "rid": 10, "deleted": 1}
        await expect_error(ws, {"action": "delete", "rid": 11, "id": 1}, "not_found")
        await expect_error(ws, {"action": "toggle", "rid": 12, "id": 1}, "not_found")
        assert "id" in await expect_error(ws, {"action": "delete", "rid": 13, "id": "x"}, "invalid_input")
        r = await request(bob, {"action": "list", "rid": 14})
        assert r["todos"] == [todo(2, "Walk the dog", False, "alice"), todo(3, "Call mum", False, "bob")]
        r = await request(ws, {"action": "create", "rid": 15, "text": "Again"})
        assert r["todo"]["id"] == 4

    run(main())


def test_create_wants_1_to_500_characters_of_text(server: Server) -> None:
    async def main() -> None:
        async with connect(server.url) as ws:
            await auth(ws, "alice")
            for rid, text in enumerate(["", "x" * 501, "é" * 501, 5, None, ["a"]]):
                assert "text" in await expect_error(ws, {"action": "create", "rid": rid, "text": text}, "invalid_input")
            assert "text" in await expect_error(ws, {"action": "create", "rid": 10}, "invalid_input")
            for i, text in enumerate(["x", "x" * 500, "é" * 500, "🦀" * 500], 1):
                r = await request(ws, {"action": "create", "rid": 20 + i, "text": text})
                assert r["todo"] == todo(i, text, False, "alice")
            assert len((await request(ws, {"action": "list", "rid": 30}))["todos"]) == 4

    run(main())


def test_rid_is_echoed_on_replies_and_errors(server: Server) -> None:
    async def main() -> None:
        async with connect(server.url) as ws:
            r = await request(ws, {"action": "whoami", "rid": "req-1"})
            assert r == {"action": "whoami", "rid": "req-1", "userId": None}
            await expect_error(ws, {"action": "list", "rid": "req-2"}, "unauthorized")
            await auth(ws, "alice")
            assert (await request(ws, {"action": "create", "rid": "req-3", "text": "a"}))["rid"] == "req-3"
            await expect_error(ws, {"action": "delete", "rid": 123456789, "id": 7}, "not_found")
            r = await request(ws, {"action": "list"})
            assert r == {"action": "list", "todos": [todo(1, "a", False, "alice")]}

    run(main())
