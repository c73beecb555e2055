"""The drain reads a whole batch at once when the engine lays the batch's
strings back to back, and each string through its own pointer otherwise."""

from __future__ import annotations

import json
import struct
from typing import Any, List, Optional, Tuple

import pytest
from conftest import connect, recv, run

from switchyard import Context, Engine, SwitchyardError
from switchyard import engine as engine_module
from switchyard._native import ffi

# (kind, action, payload, session); None: a NULL string.
Event = Tuple[int, Optional[bytes], Optional[bytes], Optional[bytes]]

REQUESTS: List[Event] = [(2, b"echo", b'{"n":%d}' % i, None) for i in range(6)]
WITH_SESSIONS: List[Event] = [(2, b"echo", b'{"n":%d}' % i, b'{"user":%d}' % i) for i in range(6)]
SOME_SESSIONS: List[Event] = [(2, b"echo", b'{"n":%d}' % i, b'{"user":%d}' % i if i % 2 else None) for i in range(6)]
MIXED: List[Event] = [
    (1, None, None, b'{"user":1}'),
    (2, b"echo", b'{"n":1}', None),
    (5, None, None, None),
    (3, None, b"free text", None),
    (2, b"echo", b"{}", b'{"user":2}'),
    (4, None, None, None),
]


def records(events: List[Event], back_to_back: bool) -> Tuple[memoryview, List[Any], bytes]:
    """``switchyard_event`` records for ``events``, their strings either in
    one buffer in record order or each in a buffer of its own; the records,
    what keeps the buffers alive, and every string concatenated."""
    strings = [s for _, a, p, sess in events for s in (a, p, sess) if s]
    joined = b"".join(strings)
    keep: List[Any] = []
    if back_to_back:
        block = ffi.new("char[]", joined)
        keep.append(block)
        at = int(ffi.cast("uintptr_t", block))
    out = bytearray()
    for i, (kind, *parts) in enumerate(events):
        words = []
        for s in parts:
            if s is None:
                words += [0, 0]
            elif back_to_back:
                words += [at, len(s)]
                at += len(s)
            else:
                own = ffi.new("char[]", s)
                keep.append(own)
                words += [int(ffi.cast("uintptr_t", own)), len(s)]
        out += struct.pack("=IIQQQQ6Q", kind, 0, 7, 100 + i, 0, 0, *words)
    return memoryview(out), keep, joined


@pytest.mark.parametrize(
    "events", [REQUESTS, WITH_SESSIONS, SOME_SESSIONS, MIXED], ids=["requests", "sessions", "some_sessions", "mixed"]
)
def test_strings_back_to_back_are_copied_as_one_block(events: List[Event]) -> None:
    recs, keep, joined = records(events, back_to_back=True)
    assert engine_module._batch_strings(recs, len(events)) == joined


@pytest.mark.parametrize(
    "events", [REQUESTS, WITH_SESSIONS, SOME_SESSIONS, MIXED], ids=["requests", "sessions", "some_sessions", "mixed"]
)
def test_strings_in_separate_buffers_are_not_copied_as_one_block(events: List[Event]) -> None:
    recs, keep, _ = records(events, back_to_back=False)
    assert engine_module._batch_strings(recs, len(events)) is None


def test_requests_are_answered_when_each_string_is_read_through_its_own_pointer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As with a library that does not lay a drain's strings back to back.
    monkeypatch.setattr(engine_module, "_batch_strings", lambda records, k: None)

    async def main() -> None:
        engine = Engine()
        ch = engine.channel("test")

        @ch.action("echo", auth=False)
        def echo(ctx: Context, data: Any) -> Any:
            return data

        @ch.action("ack", auth=False)
        def ack(ctx: Context, data: Any) -> None:
            return None

        @ch.action("refuse", auth=False)
        def refuse(ctx: Context, data: Any) -> Any:
            raise SwitchyardError("not_found", "no such thing")

        await engine.listen("127.0.0.1:0")
        try:
            async with connect(engine) as ws:
                actions = ["echo", "ack", "refuse"] * 10
                for rid, action in enumerate(actions):
                    await ws.send(json.dumps({"action": action, "rid": rid, "n": rid}))
                got = {}
                for _ in actions:
                    r = await recv(ws)
                    got[r["rid"]] = r
                for rid, action in enumerate(actions):
                    if action == "echo":
                        assert got[rid] == {"action": "echo", "rid": rid, "n": rid}
                    elif action == "ack":
                        assert got[rid] == {"action": "ack", "rid": rid}
                    else:
                        assert got[rid]["error"] == {"code": "not_found", "message": "no such thing"}
        finally:
            await engine.close()

    run(main())



class RecordingLib:
    """Stands in for the library's reply calls: records what each batch held."""

    def __init__(self) -> None:
        self.batches: List[List[Tuple[int, bytes, Optional[bytes]]]] = []

    def switchyard_reply_batch(self, engine: Any, replies: Any, n: int, statuses: Any) -> int:
        batch = []
        for i in range(n):
            r = replies[i]
            code = ffi.string(r.error_code) if r.error_code != ffi.NULL else None
            batch.append((int(r.request_id), ffi.unpack(r.json, r.json_len) if r.json_len else b"", code))
            statuses[i] = 0
        self.batches.append(batch)
        return 0


def test_a_batch_after_one_with_errors_holds_no_errors() -> None:
    engine = Engine()
    fake = RecordingLib()
    engine._lib = fake
    engine._ptr = ffi.new("char[]", 1)  # anything but None: "running"
    engine._put(1, None, b"not_found", b"no such thing")
    engine._put(2, b'{"a":1}', None, None)
    engine._flush()
    engine._put(3, b'{"b":2}', None, None)
    engine._put(4, None, None, None)
    engine._flush()
    assert fake.batches == [
        [(1, b"", b"not_found"), (2, b'{"a":1}', None)],
        [(3, b'{"b":2}', None), (4, b"", None)],
    ]
