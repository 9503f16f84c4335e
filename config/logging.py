"""Structured logging: one JSON object per line, carrying the session context.

Log calls pass `extra={"session_id", "shop", "kind", ...}`; those fields land as keys. Tokens
and buyer data are never passed to a log call in the first place.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import orjson

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record. The intake logs a line per session, so the line costs
    little: the date and time are formatted once per second and orjson writes the object."""

    def __init__(self) -> None:
        super().__init__()
        # (second, its text) as one value: threads of a worker share the formatter.
        self._stamp = (-1, "")

    def _at(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._stamp = stamp
        return f"{stamp[1]}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "at": self._at(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except TypeError:
            # What orjson refuses (a lone surrogate, an integer past 64 bits) json escapes.
            return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log repeats what payhook logs with more context.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Celery's per-task "received" and "succeeded" lines repeat the session events payhook
    # logs itself, with less context; at hundreds of sessions a second, writing them cost a
    # worker about a tenth of its time. Task failures are still logged (at ERROR).
    logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
