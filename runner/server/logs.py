"""`seqrun serve`'s log lines: plain text, or one JSON object per line (`--log-format json`).

A JSON line has `time` (UTC, ISO 8601), `level`, `logger` and `message`, plus the ids a record
carries as fields: `lead`, `enrollment`, `sender`, `step`, `provider`, `verdict`, `status` (the
server's records and the engine's set them, runner.logfields; the messages name them too), and
`exception` with the traceback when there is one. Every record is redacted as it is made
(`runner.providers.http.install_log_redaction`): credentials, webhook secrets and URL query strings
never reach a line. The HTTP server's access log is off: a webhook URL may carry a token; each
delivery is logged by the receiver instead, by provider and verdict.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator

from runner.providers.http import install_log_redaction

FIELDS = ("lead", "enrollment", "sender", "step", "provider", "verdict", "status")
FORMATS = ("text", "json")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


@contextlib.contextmanager
def configured(log_format: str, *, debug: bool = False) -> Iterator[None]:
    """Inside the block: one handler on stderr for every logger, seqrun's and the HTTP server's
    records at INFO; afterwards the handlers and levels as they were."""
    install_log_redaction()
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    before = list(root.handlers)
    named = {name: logging.getLogger(name) for name in ("runner", "uvicorn.error")}
    levels = {name: logger.level for name, logger in named.items()}
    for old in before:
        root.removeHandler(old)
    root.addHandler(handler)
    for logger in named.values():
        logger.setLevel(logging.DEBUG if debug else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for old in before:
            root.addHandler(old)
        for name, logger in named.items():
            logger.setLevel(levels[name])
