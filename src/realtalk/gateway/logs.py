"""JSON log lines for the gateway, each carrying our session id and the upstream session id.

``realtalk serve`` installs :class:`JsonFormatter` on the root logger; the library itself never
configures logging. Session loggers are :class:`SessionLog` adapters, so every line a connection
writes names ``session_id`` (ours) and, once known, ``upstream_session_id`` (the server's
``sess_...``). What is logged is chosen so that no secret (tokens, keys) and no audio payload
ever reaches a log: event types, sizes, ids, close codes and reasons.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import MutableMapping
from typing import Any

__all__ = ["JsonFormatter", "SessionLog"]

_CONTEXT_FIELDS = ("session_id", "upstream_session_id", "subject", "event")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the session context."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class SessionLog(logging.LoggerAdapter[logging.Logger]):
    """A logger for one gateway session; ``upstream_session_id`` is filled in when known."""

    def __init__(self, logger: logging.Logger, session_id: str, subject: str) -> None:
        super().__init__(logger, {"session_id": session_id, "subject": subject})
        self.upstream_session_id: str | None = None

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        if self.upstream_session_id is not None:
            extra["upstream_session_id"] = self.upstream_session_id
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs
