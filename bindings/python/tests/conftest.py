"""Shared helpers: run a coroutine with a bound timeout, start an engine on a
free loopback port, and talk to it with the `websockets` client."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, TypeVar

import websockets

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent
EXAMPLES = PACKAGE / "examples"
# Test the installed package when there is one (scripts/test-python installs
# it), else the source tree.
INSTALLED = importlib.util.find_spec("switchyard") is not None
if not INSTALLED:
    sys.path.insert(0, str(PACKAGE))

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    """Runs ``coro`` on a fresh loop, failing after ``timeout`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def connect(engine_or_url: Any, path: str = "/test") -> Any:
    url = engine_or_url if isinstance(engine_or_url, str) else f"ws://{engine_or_url.address}{path}"
    return websockets.connect(url, max_size=None, open_timeout=10, close_timeout=5)


async def request(ws: Any, msg: Dict[str, Any], timeout: float = 10.0) -> Dict[str, Any]:
    await ws.send(json.dumps(msg))
    return await recv(ws, timeout)


async def recv(ws: Any, timeout: float = 10.0) -> Dict[str, Any]:
    text = await asyncio.wait_for(ws.recv(), timeout)
    value = json.loads(text)
    assert isinstance(value, dict), text
    return value


async def recv_n(ws: Any, count: int, timeout: float = 10.0) -> List[Dict[str, Any]]:
    return [await recv(ws, timeout) for _ in range(count)]


async def nothing_within(ws: Any, seconds: float) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return True
    return False


async def close_code(ws: Any, timeout: float = 10.0) -> int:
    """Reads until the server closes; returns its close code."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as e:
        return int(e.rcvd.code) if e.rcvd is not None else 1006


def python_env() -> Dict[str, str]:
    env = dict(os.environ)
    if not INSTALLED:
        env["PYTHONPATH"] = str(PACKAGE) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


Setup = Callable[[Any], None]
