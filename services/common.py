"""What every service shares: guarded input, quiet client errors, the request log monitoring
reads, and a heap frozen after the model loads."""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import bentoml

from projects.core import paths
from projects.core.cli import StageError
from services.http import (
    Admission,
    App,
    BodyGuard,
    Contract,
    Message,
    Receive,
    Scope,
    Send,
    install_timeout,
)

# Written by `python -m services.pin`: each project's pinned champion, read by its service;
# `SERVICES_PINNED_FILE` moves it (a second set of services from another registry, in tests).
PINNED_FILE = Path(
    os.environ.get("SERVICES_PINNED_FILE") or Path(__file__).with_name("pinned.json")
)
# The requests a worker holds at once, how many of them run (the others wait their turn), and
# how long a request may take (see `services.http.Admission`); the environment overrides them
# (SERVICE_MAX_IN_FLIGHT, SERVICE_MAX_RUNNING, SERVICE_TIME_LIMIT).
MAX_IN_FLIGHT = 1
MAX_RUNNING = 1
TIME_LIMIT = 30.0

T = TypeVar("T")
log = logging.getLogger(__name__)


def read_pinned(project: str, path: Path = PINNED_FILE) -> dict[str, str]:
    """The pin of one project, as `pin` recorded it.

    Raises:
        StageError: the file or the project is missing; run `python -m services.pin`.
    """
    try:
        return json.loads(path.read_text())[project]
    except (OSError, KeyError, json.JSONDecodeError):
        raise StageError(
            f"no pinned model for {project} in {path}: run `python -m services.pin` "
            "(make serve does)"
        ) from None


def freeze_heap() -> None:
    """Move everything loaded so far (the model, the libraries) out of the garbage collector's
    view. Without this, full collections walk the model's objects every few thousand requests
    and take 100 ms or more: the slowest requests, not the typical ones."""
    gc.collect()
    gc.freeze()


def refreeze_heap() -> None:
    """`freeze_heap` again after a switch: the old model was frozen with everything else, and
    the collector never frees what is frozen, so a reference cycle in it would outlive it.
    Unfrozen, it is collected (the one full walk of the heap this costs is once a switch), and
    the new model is frozen in its place."""
    gc.unfreeze()
    freeze_heap()


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


class BatchedLog:
    """Appends lines to `<directory>/<UTC date><suffix>`, off the request path.

    `append` only puts the line in memory; a background thread writes what has gathered every
    `interval` seconds, so the request path never waits on the disk, and a crash loses at most
    the last interval's lines.
    """

    suffix = ".log"
    name = "log"

    def __init__(self, directory: Path, interval: float = 1.0) -> None:
        self.directory = directory
        self.interval = interval
        self._pending: deque[str] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def append_line(self, line: str) -> None:
        """Queue one line (without its line end)."""
        self._pending.append(line)

    def flush(self) -> None:
        """Write every pending line now."""
        lines = []
        while self._pending:
            lines.append(self._pending.popleft())
        if not lines:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{dt.datetime.now(dt.UTC):%Y-%m-%d}{self.suffix}"
        data = "".join(f"{line}\n" for line in lines).encode("utf-8", "surrogateescape")
        # one append-mode write per batch: several workers may share the file without
        # interleaving their lines
        descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # a worker killed in the middle of a write leaves its last line cut short: begin on
            # a line of our own, or our first line would be glued to that one and lost with it
            # (readers skip blank lines and name a cut one)
            size = os.fstat(descriptor).st_size
            if size and os.pread(descriptor, 1, size - 1) != b"\n":
                data = b"\n" + data
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
        finally:
            os.close(descriptor)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except OSError:  # a full or read-only disk must not stop the service or this thread
                logging.getLogger(__name__).exception("%s: could not write a batch", self.name)


class RequestLog(BatchedLog):
    """One JSON record per prediction, in `<directory>/<UTC date>.jsonl`: what monitoring reads."""

    suffix = ".jsonl"
    name = "request-log"

    def append(self, record: dict[str, Any]) -> None:
        self.append_line(json.dumps(record, separators=(",", ":"), default=str))


class AccessLog:
    """ASGI middleware: one access-log line per HTTP request answered, refused ones included,
    in `<monitoring dir>/<project>/access/<UTC date>.log`.

    The line is the Combined Log Format with the request body and the response time appended,
    as nginx writes them (`projects.core.accesslog`), so the request pattern analyzer reads the
    platform's own traffic as it reads any web server's. Bodies are kept to their first
    `max_body` bytes; the client address is the connection's (behind a proxy, the proxy's).
    Writing is batched off the request path, like the request log.
    """

    def __init__(self, app: App, project: str, max_body: int = 4096) -> None:
        self.app = app
        self.max_body = max_body
        self.log = BatchedLog(paths.monitoring_dir() / project / "access")
        self.log.name = f"access-log-{project}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received, start = time.time(), time.perf_counter()
        body, answer = bytearray(), {"status": 0, "bytes": 0}

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) < self.max_body:
                body.extend(message.get("body", b"")[: self.max_body - len(body)])
            return message

        async def send_and_count(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_and_keep, send_and_count)
        finally:
            self.log.append_line(self.line(scope, bytes(body), answer, received, start))

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the lifespan through, and write what is pending when the server shuts down."""

        async def send_and_flush(message: Message) -> None:
            if message["type"].startswith("lifespan.shutdown"):
                self.log.close()
            await send(message)

        await self.app(scope, receive, send_and_flush)

    @staticmethod
    def line(
        scope: Scope, body: bytes, answer: dict[str, int], received: float, start: float
    ) -> str:
        """The access-log line of a request received at `received` (epoch seconds) and begun
        at `start` (perf_counter)."""
        from projects.core.accesslog import format_line

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client") or ("-", 0)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        return format_line(
            client_ip=str(client[0]),
            time=received,
            method=scope["method"],
            path=raw_path.decode("latin-1"),
            query=scope.get("query_string", b"").decode("latin-1"),
            protocol=f"HTTP/{scope.get('http_version', '1.1')}",
            status=answer["status"] or 500,  # no answer at all: the server failed
            bytes=answer["bytes"],
            referrer=headers.get("referer", "-"),
            user_agent=headers.get("user-agent", "-"),
            body=body.decode("utf-8", "replace"),
            request_time=time.perf_counter() - start,
        )


def add_middleware(
    service: Any, project: str, statuses: dict[str, dict[int, str]] | None = None
) -> None:
    """Give a service the middleware every service has, outermost first: the access log, so
    that it sees every refusal too; the contract (routes, methods, the OpenAPI document, with
    `statuses`: a route's own errors); admission; the body guard (see `services.http`). And
    BentoML's time limit, outermost, without its leak (`services.http.Timeout`)."""
    install_timeout()
    service.add_asgi_middleware(AccessLog, project=project)
    service.add_asgi_middleware(Contract, service=service, extra=statuses)
    service.add_asgi_middleware(
        Admission,
        routes=[api.route for api in service.apis.values()],
        limit=int(os.environ.get("SERVICE_MAX_IN_FLIGHT", MAX_IN_FLIGHT)),
        time_limit=float(os.environ.get("SERVICE_TIME_LIMIT", TIME_LIMIT)),
        running=int(os.environ.get("SERVICE_MAX_RUNNING", MAX_RUNNING)),
    )
    service.add_asgi_middleware(BodyGuard)


def _modified(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is rewritten or replaced (its inode too: two writes within
    one tick of the file system's clock have one modification time); None if it is missing."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns, found.st_size


def now() -> str:
    """An ISO timestamp in UTC, for request records."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def service_options(project: str, pinned: dict[str, str], port: int, routes: list[str]) -> dict:
    """The `@bentoml.service` options every service shares.

    Two defaults of BentoML cost more than they give on a request that takes a millisecond:
    - tracing: every request gets an OpenTelemetry span even when none is sampled (the
      default), about a sixth of a short request's time; the prediction routes are left out. To
      trace them, set `tracing.sample_rate` and drop `excluded_urls`;
    - BentoML's access log: a formatted log record per request, about 5 % of the time; it is
      off, because `AccessLog` writes every request, batched off the request path, in the
      format web servers use. Set `"logging": {"access": {"enabled": True}}` to have it back.
    """
    return {
        "http": {"host": "127.0.0.1", "port": port},
        "metrics": {"enabled": True},
        "tracing": {"excluded_urls": routes},
        "logging": {"access": {"enabled": False}},
        "labels": {
            "project": project,
            "model": pinned["model"],
            "model_version": pinned["version"],
        },
    }


@dataclass(frozen=True)
class Champion:
    """The model a service answers with, and which registered version it is."""

    name: str
    version: str
    tag: str
    model: Any


class ModelService:
    """What every service does around its model; a service class subclasses it and sets
    `project`, `pinned` (from `read_pinned`), `bento_model` and `load`.

    On start: client errors logged as INFO, the model loaded from the pinned BentoML model,
    the request log opened, the heap frozen, and a thread started that follows the pin. On
    shutdown: the request log flushed.

    A new champion without a restart: when `python -m services.pin` records another tag for
    the project in `pinned_file` (`make serve` runs it when `@champion` moves), the thread
    loads that model from the BentoML store beside the one in use, then swaps the two in one
    assignment. A request reads `self.champion` once, so it is answered by one model from start
    to end, and every answer after the swap names the new version. A model that cannot be
    loaded is logged and the old one kept. Nothing but the file on this machine triggers it.
    Once no request can still hold the old model (`refreeze_after`), it is collected and the
    heap frozen again with the new one (`refreeze_heap`).
    """

    project: ClassVar[str]
    pinned: ClassVar[dict[str, str]]
    bento_model: ClassVar[Any]
    pinned_file: ClassVar[Path] = PINNED_FILE
    follow_every: ClassVar[float] = 1.0  # seconds between looks at the pin
    # seconds from a switch to the heap frozen again (`refreeze_heap`): by then the requests
    # the old model was answering are over
    refreeze_after: ClassVar[float] = TIME_LIMIT

    def __init__(self) -> None:
        quiet_client_errors()
        pin = self.pinned
        self.champion = Champion(
            pin["model"], pin["version"], pin["tag"], self.load(self.bento_model)
        )
        self.requests = RequestLog(paths.requests_dir(self.project))
        freeze_heap()
        self._stop = threading.Event()
        self._follower = threading.Thread(target=self._follow, name="follow-pin", daemon=True)
        self._follower.start()

    def load(self, stored: Any) -> Any:
        """The model, from `stored`: a BentoML model (`path_of` finds its files)."""
        raise NotImplementedError

    @property
    def version(self) -> str:
        """The registered model version answering now."""
        return self.champion.version

    @bentoml.on_shutdown
    def close(self) -> None:
        self._stop.set()
        self.requests.close()

    def _follow(self) -> None:
        """Swap to the model the pin names whenever it changes (see the class's docstring)."""
        seen = None  # so the first look reads the pin, which may have moved since the start
        refreeze_at = None
        while not self._stop.wait(self.follow_every):
            if refreeze_at is not None and time.monotonic() >= refreeze_at:
                refreeze_heap()
                refreeze_at = None
            modified = _modified(self.pinned_file)
            if modified == seen:
                continue
            seen = modified
            try:
                if self.switch(read_pinned(self.project, self.pinned_file)):
                    refreeze_at = time.monotonic() + self.refreeze_after
            except Exception:  # a bad pin or model must not stop the service or this thread
                log.exception("%s: could not switch to the new pin; still serving v%s",
                              self.project, self.champion.version)  # fmt: skip

    def stored(self, tag: str) -> Any:
        """The BentoML model `tag` from the store, which `load` reads."""
        return bentoml.models.get(tag)

    def switch(self, pin: dict[str, str]) -> bool:
        """Load the model `pin` names beside the current one and swap; False if it is the one
        in use."""
        if pin["tag"] == self.champion.tag:
            return False
        model = self.load(self.stored(pin["tag"]))
        old, self.champion = (
            self.champion,
            Champion(pin["model"], pin["version"], pin["tag"], model),
        )
        log.info("%s: switched from %s v%s to %s v%s", self.project, old.name, old.version,
                 pin["model"], pin["version"])  # fmt: skip
        return True

    async def compute(self, inline: bool, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)`, on the event loop when `inline`, else in a worker thread.

        A small request is cheaper to answer on the loop than to hand to a thread (a third of the
        cost of a one-text request); a large one goes to a thread, so that it does not hold up
        the probes and the requests behind it.
        """
        if inline:
            return function(*args)
        import anyio.to_thread

        return await anyio.to_thread.run_sync(function, *args)

    @staticmethod
    def new_request() -> str:
        """A fresh request id; prediction `i` of the request is `<request id>-<i>`."""
        return uuid.uuid4().hex

    def record(
        self,
        route: str,
        start: float,
        rows: Iterable[dict[str, Any]],
        request_id: str,
        champion: Champion,
    ) -> None:
        """Log one record per prediction of a request that began at `start` (perf_counter) and
        was answered by `champion`: each row plus the time, request id, route, model name and
        version and the request's latency. A row's `prediction_id`, which the response also
        carries, is what feedback and `make lineage` refer to."""
        shared = {
            "timestamp": now(),
            "request_id": request_id,
            "route": route,
            "model": champion.name,
            "model_version": champion.version,
            "latency_ms": round((time.perf_counter() - start) * 1000, 3),
        }
        for row in rows:
            self.requests.append(shared | row)
