"""The cdef in switchyard/_native.py against include/switchyard.h: every
declaration we use must match the header's, and every struct its layout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cffi import FFI

from switchyard import _native

HEADER = Path(__file__).resolve().parents[3] / "include" / "switchyard.h"


def header_ffi() -> FFI:
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#") and 'extern "C"' not in ln]
    body = "\n".join(lines)
    body = re.sub(r"^\}\s*$", "", body, flags=re.M)  # the closing brace of extern "C"
    ffi = FFI()
    ffi.cdef(body)
    return ffi


@pytest.mark.skipif(not HEADER.is_file(), reason="needs the workspace's include/switchyard.h")
def test_cdef_matches_the_header() -> None:
    theirs = header_ffi()
    ours = _native.ffi
    names = re.findall(r"\b(switchyard_\w+)\s*\(", _native.CDEF)
    assert len(names) > 40
    for name in names:
        ours_t = ours.typeof(getattr(_native.load(), name))
        h = theirs.dlopen(_native.library_path())
        theirs_t = theirs.typeof(getattr(h, name))
        assert ours_t.cname == theirs_t.cname, name
    for struct in ("switchyard_event", "switchyard_reply", "switchyard_stats"):
        assert ours.sizeof(struct) == theirs.sizeof(struct), struct
        fields_ours = [(f, ours.offsetof(struct, f)) for f, _ in ours.typeof(struct).fields]
        fields_theirs = [(f, theirs.offsetof(struct, f)) for f, _ in theirs.typeof(struct).fields]
        assert fields_ours == fields_theirs, struct


@pytest.mark.skipif(not HEADER.is_file(), reason="needs the workspace's include/switchyard.h")
def test_constants_match_the_header() -> None:
    text = HEADER.read_text()
    defined = dict(re.findall(r"#define SWITCHYARD_(\w+) (-?\d+)\s*$", text, flags=re.M))
    ours = {k: v for k, v in vars(_native).items() if k.isupper() and isinstance(v, int) and k != "ABI_MAJOR"}
    assert len(ours) > 30
    for name, value in ours.items():
        assert name in defined, name
        assert int(defined[name]) == value, name


def test_abi_version_and_strerror() -> None:
    lib = _native.load()
    assert lib.switchyard_abi_version() >> 16 == _native.ABI_MAJOR
    assert _native.strerror(_native.STALE).startswith("SWITCHYARD_STALE")
    assert _native.strerror(12345).startswith("SWITCHYARD_UNKNOWN")
