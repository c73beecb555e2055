"""Errors: the one a handler raises to answer a request, and the one the
engine's C ABI reports."""

from __future__ import annotations

import re

_CODE = re.compile(r"^[a-z0-9_]+$")


class SwitchyardError(Exception):
    """Raise it from a handler or middleware to answer the request with
    ``{"error": {"code": code, "message": message}}``. ``code`` is
    ``snake_case`` (``[a-z0-9_]+``); any other exception answers
    ``internal``."""

    def __init__(self, code: str, message: str = "") -> None:
        if not _CODE.match(code):
            raise ValueError(f"error code {code!r} is not snake_case ([a-z0-9_]+)")
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class EngineError(Exception):
    """A call into libswitchyard failed: ``status`` is the negative
    ``SWITCHYARD_*`` code, ``name`` its name (``SWITCHYARD_STALE``...)."""

    def __init__(self, status: int, name: str, detail: str = "") -> None:
        super().__init__(f"{name} ({status})" + (f": {detail}" if detail else ""))
        self.status = status
        self.name = name
        self.detail = detail
