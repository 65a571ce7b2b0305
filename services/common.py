"""What every service shares: quiet client errors, and the request log monitoring reads."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any

from projects.core import paths

MONITORING_DIR = paths.ROOT / "monitoring"


class ClientErrorFilter(logging.Filter):
    """BentoML logs a client's invalid request as an ERROR with a traceback; make it one INFO
    line, so that ERROR means the server's own failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        from bentoml.exceptions import BentoMLException
        from pydantic import ValidationError

        error = record.exc_info[1] if record.exc_info else None
        client = isinstance(error, ValidationError) or (
            isinstance(error, BentoMLException) and error.error_code.value < 500
        )
        if client:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.getMessage()}: client error: {str(error).splitlines()[0]}"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


def quiet_client_errors() -> None:
    """Install `ClientErrorFilter` on BentoML's HTTP app logger (once)."""
    logger = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
        logger.addFilter(ClientErrorFilter())


class RequestLog:
    """Appends one JSON record per prediction to `<directory>/<UTC date>.jsonl`.

    `append` only puts the record in memory; a background thread writes what has gathered every
    `interval` seconds, so the request path never waits on the disk, and a crash loses at most
    the last interval's records.
    """

    def __init__(self, directory: Path, interval: float = 1.0) -> None:
        self.directory = directory
        self.interval = interval
        self._pending: deque[dict[str, Any]] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def append(self, record: dict[str, Any]) -> None:
        self._pending.append(record)

    def flush(self) -> None:
        """Write every pending record now."""
        records = []
        while self._pending:
            records.append(self._pending.popleft())
        if not records:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{dt.datetime.now(dt.UTC):%Y-%m-%d}.jsonl"
        with path.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in records)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()


def now() -> str:
    """An ISO timestamp in UTC, for request records."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
