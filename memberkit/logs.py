"""Logs an operator can use: every line of a request carries its request id (also sent back in the
X-Request-Id header), one access line per request, text or JSON (MEMBERKIT_LOG_FORMAT=json) for collectors.
Nothing here logs variables, bodies or personal data: only what the caller is (a key id or "member")."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextvars import ContextVar

REQUEST_ID: ContextVar[str] = ContextVar("memberkit_request_id", default="-")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


_make_record = logging.getLogRecordFactory()


def _record_with_request_id(*args, **kwargs) -> logging.LogRecord:
    """Every record, whoever logs it, carries the request it was logged in (thread-pool work inherits it)."""
    record = _make_record(*args, **kwargs)
    record.request_id = REQUEST_ID.get()
    return record


logging.setLogRecordFactory(_record_with_request_id)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, an access line's fields, and the
    traceback of an error."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z", "level": record.levelname, "logger": record.name,
                 "message": record.getMessage(), "request_id": getattr(record, "request_id", "-")}
        entry.update(getattr(record, "access", {}))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure() -> None:
    """memberkit's loggers to stderr, once per process (the CLI, and each server worker)."""
    logger = logging.getLogger("memberkit")
    if any(getattr(h, "memberkit", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.memberkit = True
    json_lines = os.environ.get("MEMBERKIT_LOG_FORMAT", "text").lower() == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
