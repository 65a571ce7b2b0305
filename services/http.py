"""The HTTP contract every service keeps, as ASGI middleware around BentoML's app.

- `Contract`: every route and method the OpenAPI document names, and no other: 404 for an
  unknown path, 405 (with `Allow`) for a method a route does not have, and an OpenAPI document
  (`/docs.json`) that declares every status each route can return, with one error body shape.
- `Admission`: a bound on the requests a worker holds and on how long one may take: 503 with
  `Retry-After` at once beyond the bound, 504 past the time limit. The probes are never held.
- `BodyGuard`: a JSON body within the size limit, or 413/415.
- `Timeout`: BentoML's time limit on every request, in place of its own, which leaks.

Every error is `{"error": "<what is wrong>"}`; a 400 from validation adds `detail`, the fields
at fault (`loc`) and why (`msg`), as pydantic reports them.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping
from typing import Any

JSON = "application/json"
MAX_BODY_BYTES = 1_048_576
# Requests with these methods carry a JSON body; the rest (probes, metrics, docs) pass untouched.
API_METHODS = frozenset({"POST", "PUT", "PATCH"})
# BentoML's own routes besides the APIs; all answer GET (and so HEAD).
PROBES = ("/healthz", "/livez", "/readyz", "/metrics")
PAGES = ("/", "/docs.json", "/schema.json")
STATIC = ("/static_content/", "/assets/")
READ = ("GET", "HEAD")
DOCS = "/docs.json"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


async def reject(
    send: Send, status: int, message: str, headers: Mapping[str, str] | None = None
) -> None:
    """Answer with `{"error": message}`, `status` and `headers`."""
    body = json.dumps({"error": message}).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    fixed = [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": fixed + extra})
    await send({"type": "http.response.body", "body": body})


def error(status: int, message: str) -> Any:
    """A JSON error response `{"error": message}` that an API method can return."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


class BodyGuard:
    """ASGI middleware: a JSON body of at most `max_bytes`, or a 4xx naming the problem.

    BentoML reads any body with any content type and parses it as JSON, and it sets no size
    limit. This answers 415 for a missing or non-JSON content type and 413 for a body over the
    limit (by `Content-Length`, or by counting a chunked body), before the service sees it.
    """

    def __init__(self, app: App, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in API_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != JSON:
            got = f"got {media_type!r}" if media_type else "no Content-Type header"
            await reject(send, 415, f"the body must be JSON (Content-Type: {JSON}); {got}")
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await reject(send, 413, f"the body is over the limit of {self.max_bytes} bytes")
            return
        body, more = b"", True
        while more:  # read it all (bounded), so a chunked body is held to the limit too
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await reject(send, 413, f"the body is over the limit of {self.max_bytes} bytes")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class Admission:
    """ASGI middleware: at most `limit` requests to `routes` held at once in this worker, of
    which `running` run and the rest wait their turn, each answered within `time_limit` seconds.

    A request beyond the bound gets 503 with `Retry-After` at once, before its body is read:
    a client is better served by a quick refusal it can retry elsewhere than by a queue of
    seconds. Few run at once because a prediction holds the interpreter lock for most of its
    time: a second thread running makes a worker little faster or slower (measured: 0.7 to 1.2 times
    the throughput of one), it makes each request slower and takes turns on the lock from the
    event loop, which then answers probes and refusals late. A request waiting its turn keeps
    the worker busy between two requests, with no thread. A request past its time limit
    (counted from its arrival, its wait included) gets 504; the work it started (a thread
    cannot be stopped) keeps its place in the bound until it ends, so the bound holds for the
    work, not only for the answers. Probes and metrics are not routes here: never held.
    """

    def __init__(
        self, app: App, routes: Collection[str], limit: int, time_limit: float,
        running: int = 1, retry_after: int = 1,
    ) -> None:  # fmt: skip
        self.app = app
        self.routes = frozenset(routes)
        self.limit = limit
        self.time_limit = time_limit
        self.turns = asyncio.Semaphore(max(1, running))
        self.retry_after = retry_after
        self.held = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.routes:
            await self.app(scope, receive, send)
            return
        if self.held >= self.limit:
            await reject(
                send, 503,
                f"the service is at capacity ({self.limit} requests in progress); retry after "
                f"{self.retry_after} s",
                {"Retry-After": str(self.retry_after)},
            )  # fmt: skip
            return
        self.held += 1
        state = {"started": False, "late": False}

        async def send_in_time(message: Message) -> None:
            if state["late"]:
                return  # the client already has its 504
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        async def in_turn() -> None:
            async with self.turns:
                await self.app(scope, receive, send_in_time)

        work = asyncio.ensure_future(in_turn())
        work.add_done_callback(self._release)
        done, _ = await asyncio.wait({work}, timeout=self.time_limit)
        if work in done or state["started"]:
            await work  # done, or answering already: let it finish
            return
        state["late"] = True
        work.cancel()  # a thread it waits on still runs to its end, holding its place
        await reject(send, 504, f"the request took longer than the limit of {self.time_limit} s")

    def _release(self, work: asyncio.Future) -> None:
        self.held -= 1
        if not work.cancelled():
            work.exception()  # retrieved here, so a failure after a 504 is not reported twice


class Timeout:
    """ASGI middleware in the place of BentoML's `TimeoutMiddleware` (`install_timeout`): a
    request whose answer has not begun within `timeout` seconds (BentoML's `traffic.timeout`,
    60 s by default) gets 504, as with BentoML's, and the timer is cancelled once it has.

    BentoML's never cancels its timer: every request, probes and refusals too, leaves a timer,
    a future and a context alive for the whole timeout. At a few hundred requests a second that
    is tens of thousands of objects, and the garbage collector's full collections, which walk
    them all, grew from 3 to 66 ms over `make bench-overload`'s overload phase: the slowest
    requests, and memory that grows with the request rate. The prediction routes have their
    own, shorter time limit (`Admission`); this one covers the rest.
    """

    def __init__(self, app: App, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        begun: asyncio.Future[None] = loop.create_future()

        def settle(_: object = None) -> None:
            if not begun.done():
                begun.set_result(None)

        async def answering(message: Message) -> None:
            settle()
            await send(message)

        timer = loop.call_later(self.timeout, self._late, begun)
        work = asyncio.ensure_future(self.app(scope, receive, answering))
        work.add_done_callback(settle)  # ended without an answer: nothing to wait for
        try:
            await begun
        except TimeoutError:
            if work.cancel():
                await reject(send, 504, f"the request took longer than {self.timeout} s")
            return
        finally:
            timer.cancel()
        await work

    @staticmethod
    def _late(begun: asyncio.Future[None]) -> None:
        if not begun.done():
            begun.set_exception(TimeoutError())


def install_timeout() -> None:
    """Have BentoML build its apps with `Timeout` where it would put its `TimeoutMiddleware`
    (it imports that name from its module each time it builds an app), found in whichever
    module of BentoML's `http` package defines it."""
    import importlib
    import pkgutil

    from bentoml._internal.server import http

    for found in pkgutil.iter_modules(http.__path__):
        module = importlib.import_module(f"{http.__name__}.{found.name}")
        if isinstance(getattr(module, "TimeoutMiddleware", None), type):
            module.TimeoutMiddleware = Timeout
            return
    raise RuntimeError("BentoML's TimeoutMiddleware was not found: services.http.Timeout "
                       "cannot take its place")  # fmt: skip


class Contract:
    """ASGI middleware: the routes and methods of `service`'s OpenAPI document, and no others,
    and that document made exact (see `exact_spec`).

    BentoML answers an unknown path or method in plain text, and its document declares errors
    it never sends (404 everywhere, an error `detail` that is a string) and leaves out those it
    does (413, 415, 503, 504). `extra` adds a route's own statuses: `{"/similar_items": {404:
    "the item is not in the catalogue"}}`.
    """

    def __init__(
        self, app: App, service: Any, extra: Mapping[str, Mapping[int, str]] | None = None
    ) -> None:
        self.app = app
        self.service = service
        self.extra = extra or {}
        self.apis = {api.route for api in service.apis.values()}
        self.methods = {route: ("POST",) for route in self.apis} | {
            path: READ for path in (*PROBES, *PAGES)
        }
        self._spec: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        allowed = self.methods.get(path) or (READ if path.startswith(STATIC) else None)
        if allowed is None:
            await reject(send, 404, f"no route {path}; the routes are listed in {DOCS}")
        elif method == "OPTIONS":
            await send({"type": "http.response.start", "status": 204,
                        "headers": [(b"allow", ", ".join(allowed).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": b""})
        elif method not in allowed:
            await reject(
                send, 405, f"{path} does not take {method}; it takes {', '.join(allowed)}",
                {"Allow": ", ".join(allowed)},
            )  # fmt: skip
        elif path == DOCS:
            await self._send_spec(send, head=method == "HEAD")
        else:
            await self.app(scope, receive, send)

    async def _send_spec(self, send: Send, head: bool) -> None:
        if self._spec is None:
            spec = exact_spec(self.service.openapi_spec.asdict(), self.apis, self.extra)
            self._spec = json.dumps(spec).encode()
        length = str(len(self._spec)).encode()
        headers = [(b"content-type", JSON.encode()), (b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else self._spec})


ERROR_SCHEMA = {
    "type": "object",
    "title": "Error",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What is wrong, in a sentence."},
        "detail": {
            "type": "array",
            "description": "With a 400 from validation: each field at fault and why.",
            "items": {"$ref": "#/components/schemas/FieldError"},
        },
    },
}
FIELD_ERROR_SCHEMA = {
    "type": "object",
    "title": "FieldError",
    "required": ["loc", "msg", "type"],
    "properties": {
        "loc": {
            "type": "array",
            "description": 'Where: the field\'s path in the body, e.g. `["texts", 0]`.',
            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
        "msg": {"type": "string", "description": "Why the value is refused."},
        "type": {"type": "string", "description": "Pydantic's error type, e.g. `too_short`."},
        "url": {"type": "string", "description": "Pydantic's page on the error type."},
    },
}
# What any API route may answer besides 200, and when.
API_ERRORS = {
    400: "The body is not valid JSON or breaks the schema; `detail` names each field at fault.",
    413: f"The body is over {MAX_BODY_BYTES} bytes.",
    415: f"The body is not sent as `{JSON}`.",
    503: "The service is at capacity: retry after `Retry-After` seconds.",
    504: "The request took longer than the service's time limit.",
}
# BentoML's error schemas, replaced by `Error`.
BENTOML_ERRORS = ("InvalidArgument", "NotFound", "InternalServerError")
PROBE_TEXT = {"text/plain": {"schema": {"type": "string"}}}


def exact_spec(
    spec: dict[str, Any], apis: Collection[str], extra: Mapping[str, Mapping[int, str]]
) -> dict[str, Any]:
    """BentoML's OpenAPI document with the statuses and bodies the service really answers.

    Every API route declares 400, 413, 415, 503 (with `Retry-After`) and 504 as `Error`, plus
    its `extra` statuses, and no 404 or 500 unless `extra` names them; the probes answer plain
    text. Nothing else changes.
    """
    spec = copy.deepcopy(spec)
    ref = {"$ref": "#/components/schemas/Error"}
    for path, item in spec.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            if path not in apis:
                if path in PROBES:
                    responses.get("200", {}).setdefault("content", PROBE_TEXT)
                continue
            errors = {**API_ERRORS, **extra.get(path, {})}
            kept = {str(k): v for k, v in responses.items() if str(k).startswith("2")}
            operation["responses"] = kept | {
                str(status): {"description": text, "content": {JSON: {"schema": ref}}}
                for status, text in sorted(errors.items())
            }
            if "requestBody" in operation:  # every route reads a JSON body, within a limit
                operation["requestBody"]["required"] = True
                operation["requestBody"]["description"] = (
                    f"JSON of at most {MAX_BODY_BYTES:,} bytes: a larger body is refused with "
                    "413, however few items it holds."
                )
            operation["responses"]["503"]["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0},
                }
            }
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in BENTOML_ERRORS:
        schemas.pop(name, None)
    schemas["Error"], schemas["FieldError"] = ERROR_SCHEMA, FIELD_ERROR_SCHEMA
    return spec
