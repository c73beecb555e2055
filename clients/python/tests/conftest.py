"""Runs the Rust todos example for the Python client's tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "clients" / "python"))

SECRET = "switchyard-dev-secret"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(sub: str, expires_in: int = 3600) -> str:
    """An HS256 JWT for `sub`, signed with the example's default secret."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"sub": sub, "exp": int(time.time()) + expires_in}).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def todos_binary() -> str:
    path = os.environ.get("SWITCHYARD_TODOS_BIN") or str(ROOT / "target" / "debug" / "examples" / "todos")
    if not Path(path).exists():
        pytest.fail(f"{path} does not exist: run `cargo build -p switchyard --example todos`")
    return path


class TodosServer:
    """The todos example, running on 127.0.0.1."""

    def __init__(self, port: int = 0) -> None:
        env = dict(os.environ, SWITCHYARD_ADDR="", SWITCHYARD_JWT_SECRET=SECRET)
        self.proc = subprocess.Popen(
            [todos_binary(), "--addr", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.fullmatch(r"listening on ws://127\.0\.0\.1:(\d+)/todos\n", line)
        if m is None:
            self.stop()
            raise RuntimeError(f"unexpected first line {line!r}")
        self.port = int(m.group(1))
        self.url = f"ws://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        """Freezes the process (its sockets stay open, nothing is answered),
        and waits until the kernel shows it stopped."""
        self.proc.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.proc.pid}/stat")
        deadline = time.monotonic() + 5
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "T":
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not stop")
            time.sleep(0.01)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    s = TodosServer()
    try:
        yield s
    finally:
        s.resume()
        s.stop()
