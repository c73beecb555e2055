"""Every error code of PROTOCOL.md §3.2 through the Python host."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from conftest import close_code, connect, recv, request, run
import switchyard.engine as engine_module
from switchyard import Context, Engine, EngineError, SwitchyardError


def make_engine(**config: Any) -> Engine:
    engine = Engine(threads=1, **config)
    ch = engine.channel("test")

    @ch.action("echo", auth=False, exclusive=False)
    def echo(ctx: Context, data: Any) -> Any:
        return data

    @ch.action("private")
    def private(ctx: Context, data: Any) -> Any:
        return {"ok": True}

    async def forbid(ctx: Context, data: Any, nxt: Any) -> Any:
        raise SwitchyardError("forbidden", "admins only")

    ch.add("admin", lambda ctx, data: {"ok": True}, auth=False, middleware=[forbid])

    @ch.action("validate", auth=False)
    def validate(ctx: Context, data: Any) -> Any:
        if not isinstance(data.get("n"), int):
            raise SwitchyardError("invalid_input", "`n` must be an integer")
        return {"n": data["n"]}

    calls = {"n": 0}

    async def limit(ctx: Context, data: Any, nxt: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 2:
            raise SwitchyardError("rate_limited", "slow down")
        return await nxt()

    ch.add("limited", lambda ctx, data: None, auth=False, middleware=[limit])

    @ch.action("sleepy", auth=False)
    async def sleepy(ctx: Context, data: Any) -> Any:
        await asyncio.sleep(5)
        return {"late": True}

    @ch.action("boom", auth=False)
    def boom(ctx: Context, data: Any) -> Any:
        raise RuntimeError("secret detail")

    @ch.action("aboom", auth=False)
    async def aboom(ctx: Context, data: Any) -> Any:
        await asyncio.sleep(0.01)
        raise KeyError("secret detail")

    @ch.action("own", auth=False)
    def own(ctx: Context, data: Any) -> Any:
        raise SwitchyardError("not_found", "no such thing")

    @ch.action("badcode", auth=False)
    def badcode(ctx: Context, data: Any) -> Any:
        raise SwitchyardError("Bad Code", "x")

    @ch.action("unserialisable", auth=False)
    def unserialisable(ctx: Context, data: Any) -> Any:
        return {"x": object()}

    @ch.action("nan", auth=False)
    def nan(ctx: Context, data: Any) -> Any:
        return {"x": float("nan")}

    return engine


def error_of(r: Any) -> str:
    assert "error" in r, r
    return str(r["error"]["code"])


@pytest.fixture(params=["default", "stdlib"])
def json_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with the JSON backend in use (orjson when installed) and
    again with the standard library's."""
    if request.param == "stdlib":
        monkeypatch.setattr(engine_module, "_dumps", engine_module._std_dumps)
        monkeypatch.setattr(engine_module, "_loads", engine_module._std_loads)
        return "stdlib"
    return engine_module.JSON_BACKEND


def test_every_engine_and_handler_error_code(json_backend: str) -> None:
    async def main() -> None:
        engine = make_engine(reply_timeout_ms=200)
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                await ws.send("{not json")
                assert error_of(await recv(ws)) == "bad_json"
                await ws.send("[1,2]")
                assert error_of(await recv(ws)) == "not_object"
                r = await request(ws, {"rid": 1, "x": 1})
                assert error_of(r) == "missing_action" and r["rid"] == 1
                r = await request(ws, {"action": "nope", "rid": 2})
                assert error_of(r) == "unknown_action" and r["action"] == "nope"
                r = await request(ws, {"action": "toString", "rid": 3})
                assert error_of(r) == "unknown_action"
                r = await request(ws, {"action": "private", "rid": 4})
                assert r == {"action": "private", "rid": 4, "error": r["error"]}
                assert error_of(r) == "unauthorized"
                r = await request(ws, {"action": "admin", "rid": 5})
                assert r["error"] == {"code": "forbidden", "message": "admins only"}
                r = await request(ws, {"action": "validate", "rid": 6, "n": "x"})
                assert error_of(r) == "invalid_input" and "n" in r["error"]["message"]
                assert (await request(ws, {"action": "validate", "rid": 7, "n": 3}))["n"] == 3
                for rid in (8, 9):
                    assert await request(ws, {"action": "limited", "rid": rid}) == {"action": "limited", "rid": rid}
                assert error_of(await request(ws, {"action": "limited", "rid": 10})) == "rate_limited"
                r = await request(ws, {"action": "sleepy", "rid": 11})
                assert error_of(r) == "timeout" and r["rid"] == 11
                await ws.send(b"\x00\x01")
                assert error_of(await recv(ws)) == "binary_not_supported"
                r = await request(ws, {"action": "boom", "rid": 12})
                assert r["error"] == {"code": "internal", "message": "internal error"}
                r = await request(ws, {"action": "aboom", "rid": 13})
                assert r["error"] == {"code": "internal", "message": "internal error"}
                r = await request(ws, {"action": "own", "rid": 14})
                assert r["error"] == {"code": "not_found", "message": "no such thing"}
                for rid, action in enumerate(["badcode", "unserialisable"], 15):
                    r = await request(ws, {"action": action, "rid": rid})
                    assert error_of(r) == "internal", r
                r = await request(ws, {"action": "nan", "rid": 17})
                if json_backend == "orjson":
                    assert r == {"action": "nan", "rid": 17, "x": None}
                else:
                    assert error_of(r) == "internal", r
                big = 2**70
                r = await request(ws, {"action": "echo", "rid": 18, "big": big, "u": "é\u2028"})
                assert r == {"action": "echo", "rid": 18, "big": big, "u": "é\u2028"}
                # The connection is still fine after every error.
                assert await request(ws, {"action": "echo", "rid": 20, "x": 1}) == {"action": "echo", "rid": 20, "x": 1}
        finally:
            await engine.close()

    run(main())


def test_debug_puts_the_exception_in_internal_errors() -> None:
    async def main() -> None:
        engine = make_engine(debug=True)
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                r = await request(ws, {"action": "boom", "rid": 1})
                assert r["error"]["code"] == "internal"
                assert "secret detail" in r["error"]["message"]
        finally:
            await engine.close()

    run(main())


def test_close_on_error_closes_with_1003() -> None:
    async def main() -> None:
        engine = Engine(threads=1)
        engine.channel("test", close_on_error=True, actions={"echo": {"func": lambda c, d: d, "auth": False}})
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                await ws.send(json.dumps({"action": "nope", "rid": 1}))
                assert error_of(await recv(ws)) == "unknown_action"
                assert await close_code(ws) == 1003
        finally:
            await engine.close()

    run(main())


def test_max_message_bytes_closes_with_1009() -> None:
    async def main() -> None:
        engine = make_engine(max_message_bytes=1024)
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                await ws.send(json.dumps({"action": "echo", "x": "y" * 2000}))
                assert await close_code(ws) == 1009
        finally:
            await engine.close()

    run(main())


def test_config_errors() -> None:
    with pytest.raises(TypeError):
        Engine(no_such_option=1)
    with pytest.raises(ValueError):
        SwitchyardError("Not Snake", "x")

    async def main() -> None:
        engine = make_engine(max_inflight_per_connection=0)
        with pytest.raises(EngineError) as e:
            await engine.listen("127.0.0.1:0")
        assert e.value.name == "SWITCHYARD_CONFIG_INVALID"
        assert "inflight" in str(e.value)
        engine = make_engine()
        with pytest.raises(EngineError) as e:
            await engine.listen("not an address")

    run(main())


def test_a_batch_mixing_replies_acks_and_errors() -> None:
    async def main() -> None:
        engine = make_engine()
        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                kinds = ["echo", "own", "limited", "boom", "validate"] * 20
                for rid, action in enumerate(kinds):
                    await ws.send(json.dumps({"action": action, "rid": rid, "n": rid, "x": "\x00é"}))
                got = {}
                for _ in kinds:
                    r = await recv(ws)
                    got[r["rid"]] = r
                for rid, action in enumerate(kinds):
                    r = got[rid]
                    if action == "echo":
                        assert r == {"action": "echo", "rid": rid, "n": rid, "x": "\x00é"}
                    elif action == "own":
                        assert r["error"] == {"code": "not_found", "message": "no such thing"}
                    elif action == "limited":
                        assert r == {"action": "limited", "rid": rid} or r["error"]["code"] == "rate_limited"
                    elif action == "boom":
                        assert r["error"] == {"code": "internal", "message": "internal error"}
                    else:
                        assert r == {"action": "validate", "rid": rid, "n": rid}
        finally:
            await engine.close()

    run(main())
