"""The services' shared parts, without a server: the request log, the body guard, the pins."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from projects.core import paths
from projects.core.cli import StageError
from projects.core.project import discover
from services.common import RequestLog, read_pinned
from services.http import Admission, BodyGuard, Contract, Timeout, install_timeout


def test_the_request_log_writes_what_gathered_and_everything_on_close(tmp_path) -> None:
    log = RequestLog(tmp_path, interval=60)  # no background flush during the test
    log.append({"a": 1})
    log.append({"a": 2})
    log.flush()
    log.append({"a": 3})
    log.close()
    (written,) = tmp_path.glob("*.jsonl")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}\.jsonl", written.name)
    assert [json.loads(line)["a"] for line in written.read_text().splitlines()] == [1, 2, 3]


def test_the_background_thread_flushes_within_its_interval(tmp_path) -> None:
    import time

    log = RequestLog(tmp_path, interval=0.05)
    log.append({"a": 1})
    deadline = time.monotonic() + 5
    while not list(tmp_path.glob("*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(tmp_path.glob("*.jsonl"))
    log.close()


async def _echo(scope, receive, send) -> None:
    """An ASGI app that answers 200 with the size of the body it read."""
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def _guarded(
    chunks: list[bytes], content_type: str | None, method: str = "POST"
) -> tuple[int, bytes]:
    """Send a request through `BodyGuard(_echo, max_bytes=100)`; its status and body."""
    headers = [(b"content-type", content_type.encode())] if content_type else []
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "headers": headers}
    asyncio.run(BodyGuard(_echo, max_bytes=100)(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b"{}", 200),
        ("application/json; charset=utf-8", b"{}", 200),
        ("text/plain", b"{}", 415),
        (None, b"{}", 415),
        ("application/json", b"x" * 101, 413),
    ],
)
def test_the_guard_wants_json_within_the_limit(content_type, body, status) -> None:
    got, answer = _guarded([body], content_type)
    assert got == status
    if status != 200:
        assert json.loads(answer)["error"]


def test_the_guard_counts_a_chunked_body_and_lets_gets_through() -> None:
    assert _guarded([b"x" * 60, b"x" * 60], "application/json")[0] == 413
    assert _guarded([b"x" * 60, b"x" * 40], "application/json") == (200, b"100")
    assert _guarded([b""], None, method="GET")[0] == 200


def test_a_missing_pin_says_how_to_make_it(tmp_path) -> None:
    with pytest.raises(StageError, match=r"python -m services\.pin"):
        read_pinned("spam", tmp_path / "pinned.json")


def _locked_versions() -> dict[str, str]:
    import tomllib

    lock = tomllib.loads((paths.ROOT / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"]}


@pytest.mark.parametrize("project", [p.name for p in discover() if p.has_service()])
def test_each_bentofile_builds_its_service_with_the_locked_versions(project) -> None:
    bentofile = yaml.safe_load((paths.ROOT / "services" / project / "bentofile.yaml").read_text())
    service = bentofile["service"]
    assert service.startswith(f"services.{project}."), "a project serves its own service"
    locked = _locked_versions()
    for requirement in bentofile["python"]["packages"]:
        name, version = requirement.split("==")
        assert locked[name] == version, f"{name}: bentofile {version}, uv.lock {locked[name]}"
    module = Path(*service.split(":")[0].split(".")).with_suffix(".py")
    included = bentofile["include"]
    assert any(Path(module).match(pattern) for pattern in included)


def _answer(sent: list[dict]) -> tuple[int, dict, bytes]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def _admitted(
    delays: list[float], limit: int, time_limit: float, running: int = 1
) -> list[tuple[int, dict]]:
    """Requests that take `delays` seconds each, sent at once through `Admission`."""

    async def slow(scope, receive, send) -> None:
        await asyncio.sleep(scope["delay"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    admission = Admission(
        slow, routes=["/predict"], limit=limit, time_limit=time_limit, running=running
    )

    async def one(delay: float) -> tuple[int, dict]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "path": "/predict", "method": "POST", "headers": [],
                 "delay": delay}  # fmt: skip
        await admission(scope, receive, send)
        status, headers, _ = _answer(sent)
        return status, headers

    async def run() -> list[tuple[int, dict]]:
        return await asyncio.gather(*(one(d) for d in delays))

    return asyncio.run(run())


def test_admission_refuses_beyond_its_bound_at_once_with_retry_after() -> None:
    import time

    start = time.perf_counter()
    answers = _admitted([0.2, 0.2, 0.2], limit=2, time_limit=5)
    assert [status for status, _ in answers] == [200, 200, 503]
    assert answers[2][1]["retry-after"] == "1"
    assert time.perf_counter() - start < 1


def test_held_requests_run_in_turn_and_a_wait_counts_against_the_time_limit() -> None:
    import time

    start = time.perf_counter()
    assert [s for s, _ in _admitted([0.2, 0.2], limit=2, time_limit=5)] == [200, 200]
    assert time.perf_counter() - start >= 0.4  # one ran after the other
    start = time.perf_counter()
    assert [s for s, _ in _admitted([0.2, 0.2], limit=2, time_limit=5, running=2)] == [200, 200]
    assert time.perf_counter() - start < 0.35  # side by side
    # the second waits 0.3 s for its turn: with its own 0.1 s it is past 0.35 s
    assert [s for s, _ in _admitted([0.3, 0.1], limit=2, time_limit=0.35)] == [200, 504]


def test_admission_answers_504_past_its_time_limit() -> None:
    assert [status for status, _ in _admitted([0.01, 1.0], limit=4, time_limit=0.3)] == [200, 504]


def test_work_past_its_time_limit_keeps_its_place_until_it_ends() -> None:
    import threading

    release = threading.Event()

    async def threaded(scope, receive, send) -> None:
        import anyio.to_thread

        await anyio.to_thread.run_sync(release.wait)  # a thread cannot be stopped
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    admission = Admission(threaded, routes=["/predict"], limit=1, time_limit=0.1)

    async def run() -> list[int]:
        statuses = []
        for _ in range(2):
            sent: list[dict] = []

            async def send(message: dict, sent=sent) -> None:
                sent.append(message)

            async def receive() -> dict:
                return {"type": "http.request", "body": b"", "more_body": False}

            scope = {"type": "http", "path": "/predict", "method": "POST", "headers": []}
            await admission(scope, receive, send)
            statuses.append(_answer(sent)[0])
        release.set()
        await asyncio.sleep(0.2)
        assert admission.held == 0
        return statuses

    # the first times out; its thread still runs, so the second finds no room
    assert asyncio.run(run()) == [504, 503]


def _timed(app, timeout: float, requests: int = 1) -> tuple[list[int], int]:
    """`requests` requests through `Timeout(app)` at once: their statuses, and how many timers
    the loop still had pending once they were answered."""

    async def run() -> tuple[list[int], int]:
        timeout_app = Timeout(app, timeout=timeout)

        async def one() -> int:
            sent: list[dict] = []

            async def send(message: dict) -> None:
                sent.append(message)

            scope = {"type": "http", "path": "/readyz", "method": "GET", "headers": []}
            await timeout_app(scope, None, send)
            return _answer(sent)[0]

        statuses = await asyncio.gather(*(one() for _ in range(requests)))
        loop = asyncio.get_running_loop()
        pending = [h for h in loop._scheduled if not h.cancelled()]
        return list(statuses), len(pending)

    return asyncio.run(run())


async def _ok(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_no_request_leaves_its_timer_behind() -> None:
    # BentoML's TimeoutMiddleware, which this replaces, left one per request for 60 s
    assert _timed(_ok, timeout=60, requests=100) == ([200] * 100, 0)


def test_an_answer_not_begun_within_the_timeout_is_a_504() -> None:
    async def slow(scope, receive, send) -> None:
        await asyncio.sleep(1)
        await _ok(scope, receive, send)

    assert _timed(slow, timeout=0.1) == ([504], 0)


def test_bentoml_builds_its_apps_with_our_timeout() -> None:
    from bentoml._internal.server.base_app import BaseAppFactory
    from bentoml._internal.server.http import traffic

    original = traffic.TimeoutMiddleware
    try:
        install_timeout()

        class Factory(BaseAppFactory):
            name = "test"

        middleware = Factory(timeout=60).middlewares
        assert [m.cls for m in middleware] == [Timeout]
    finally:
        traffic.TimeoutMiddleware = original


def test_admission_never_holds_the_probes() -> None:
    assert [s for s, _ in _admitted([0.2, 0.2], limit=1, time_limit=5)] == [200, 503]

    async def probe(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    admission = Admission(probe, routes=["/predict"], limit=0, time_limit=5)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/readyz", "method": "GET", "headers": []}
    asyncio.run(admission(scope, None, send))
    assert _answer(sent)[0] == 200


class _Api:
    route = "/predict"


class _Service:
    """What `Contract` reads of a BentoML service."""

    apis: ClassVar[dict] = {"predict": _Api()}

    class openapi_spec:  # noqa: N801 - stands in for BentoML's property
        @staticmethod
        def asdict() -> dict:
            error = {"description": "x", "content": {"application/json": {"schema": {}}}}
            return {
                "paths": {
                    "/predict": {"post": {"requestBody": {"content": {}},
                                          "responses": {200: {"description": "ok"},
                                                        400: error, 404: error, 500: error}}},
                    "/readyz": {"get": {"responses": {"200": {"description": "ok"}}}},
                },
                "components": {"schemas": {"InvalidArgument": {}, "NotFound": {}}},
            }  # fmt: skip


def _through_contract(path: str, method: str) -> tuple[int, dict, bytes]:
    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    contract = Contract(app, _Service(), extra={"/predict": {404: "no such item"}})
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "method": method, "headers": []}
    asyncio.run(contract(scope, None, send))
    return _answer(sent)


@pytest.mark.parametrize(
    ("path", "method", "status", "allow"),
    [
        ("/predict", "POST", 200, None),
        ("/predict", "GET", 405, "POST"),
        ("/readyz", "PUT", 405, "GET, HEAD"),
        ("/readyz", "HEAD", 200, None),
        ("/readyz", "OPTIONS", 204, "GET, HEAD"),
        ("/nowhere", "GET", 404, None),
    ],
)
def test_the_contract_routes_only_what_the_document_names(path, method, status, allow) -> None:
    got, headers, body = _through_contract(path, method)
    assert got == status
    assert headers.get("allow") == allow
    if status >= 400:
        assert json.loads(body)["error"]


def test_the_document_declares_what_each_route_answers() -> None:
    _, _, body = _through_contract("/docs.json", "GET")
    spec = json.loads(body)
    responses = spec["paths"]["/predict"]["post"]["responses"]
    assert sorted(responses) == ["200", "400", "404", "413", "415", "503", "504"]
    assert responses["404"]["description"] == "no such item"
    assert responses["503"]["headers"]["Retry-After"]["required"]
    assert spec["paths"]["/predict"]["post"]["requestBody"]["required"] is True
    assert spec["paths"]["/readyz"]["get"]["responses"]["200"]["content"] == {
        "text/plain": {"schema": {"type": "string"}}
    }
    schemas = spec["components"]["schemas"]
    assert "InvalidArgument" not in schemas and schemas["Error"]["required"] == ["error"]


def _follower_service(tmp_path, monkeypatch) -> type:
    """A `ModelService` whose "model" is the tag it was loaded from, pinned in `tmp_path`."""
    from services.common import ModelService

    monkeypatch.setenv("MONITORING_DIR", str(tmp_path / "monitoring"))
    pin = {"model": "m", "version": "1", "tag": "m:v1"}
    (tmp_path / "pinned.json").write_text(json.dumps({"p": pin}))

    class Service(ModelService):
        project, pinned, bento_model = "p", pin, "loaded m:v1"
        pinned_file = tmp_path / "pinned.json"
        follow_every = 0.02

        def stored(self, tag: str) -> str:
            return f"loaded {tag}"

        def load(self, stored: str) -> str:
            if "broken" in stored:
                raise OSError("no such model")
            return stored

    return Service


def _pin(path: Path, version: str, tag: str | None = None) -> None:
    partial = path.with_suffix(".partial")
    pin = {"model": "m", "version": version, "tag": tag or f"m:v{version}"}
    partial.write_text(json.dumps({"p": pin}))
    partial.replace(path)


def _until(condition, timeout: float = 5) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_a_service_switches_to_a_new_pin_while_it_runs(tmp_path, monkeypatch) -> None:
    service = _follower_service(tmp_path, monkeypatch)()
    try:
        assert (service.version, service.champion.model) == ("1", "loaded m:v1")
        _pin(tmp_path / "pinned.json", "2")
        assert _until(lambda: service.version == "2")
        assert service.champion.model == "loaded m:v2"
        assert service.champion.name == "m"
    finally:
        service.close()


def test_a_pin_that_cannot_be_loaded_keeps_the_old_model(tmp_path, monkeypatch, caplog) -> None:
    service = _follower_service(tmp_path, monkeypatch)()
    try:
        _pin(tmp_path / "pinned.json", "2", tag="broken:v2")
        assert _until(lambda: "could not switch" in caplog.text)
        assert service.version == "1"
        _pin(tmp_path / "pinned.json", "3")  # and it still follows the next one
        assert _until(lambda: service.version == "3")
    finally:
        service.close()


def test_after_a_switch_the_old_model_is_collected_and_the_new_one_frozen(
    tmp_path, monkeypatch
) -> None:
    import gc
    import weakref

    class Model:
        def __init__(self, tag: str) -> None:
            self.tag = tag
            self.itself = self  # a reference cycle: only the collector frees it

    class Service(_follower_service(tmp_path, monkeypatch)):
        refreeze_after = 0.05

        def load(self, stored: str) -> Model:
            return Model(stored)

    service = Service()
    try:
        old = weakref.ref(service.champion.model)
        assert not any(o is old() for o in gc.get_objects())  # frozen at the start
        _pin(tmp_path / "pinned.json", "2")
        assert _until(lambda: service.version == "2")
        assert _until(lambda: old() is None)
        new = service.champion.model
        assert _until(lambda: not any(o is new for o in gc.get_objects()))
    finally:
        service.close()


def test_records_name_the_model_and_version_that_answered(tmp_path, monkeypatch) -> None:
    import time

    service = _follower_service(tmp_path, monkeypatch)()
    champion = service.champion
    _pin(tmp_path / "pinned.json", "2")
    assert _until(lambda: service.version == "2")
    service.record("r", time.perf_counter(), [{"prediction_id": "x-0"}], "x", champion)
    service.close()
    (written,) = (tmp_path / "monitoring" / "p" / "requests").glob("*.jsonl")
    record = json.loads(written.read_text())
    assert (record["model"], record["model_version"]) == ("m", "1")  # the request's, not now's


def test_the_follower_looks_in_a_thread_and_pins_what_the_look_found(monkeypatch) -> None:
    import sys
    import threading
    import time

    from services import pin, serve

    release = threading.Event()

    def slow_look(projects: list[str]) -> list[str]:
        release.wait(10)  # as the first look, which imports MLflow
        return projects

    started: list[list[str]] = []

    class Child:
        def __init__(self, args: list[str]) -> None:
            started.append(args)

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(pin, "moved", slow_look)
    monkeypatch.setattr(serve.subprocess, "Popen", Child)
    follower = serve.Follower(["spam"], every=0)
    begun = time.monotonic()
    follower.poll()
    follower.poll()
    assert time.monotonic() - begun < 1  # the supervisor's loop, and its signals, never wait
    assert started == []
    release.set()
    follower.looking.join(10)
    follower.poll()
    assert started == [[sys.executable, "-m", "services.pin"]]


def test_a_batch_after_a_line_cut_short_by_a_killed_worker_begins_on_a_line_of_its_own(
    tmp_path,
) -> None:
    import datetime as dt

    from services.common import BatchedLog

    path = tmp_path / f"{dt.datetime.now(dt.UTC):%Y-%m-%d}.log"
    path.write_text('{"a": 1}\n{"b": ')  # a worker was killed while it wrote
    log = BatchedLog(tmp_path, interval=60)
    log.append_line('{"c": 3}')
    log.close()
    assert path.read_text().splitlines() == ['{"a": 1}', '{"b": ', '{"c": 3}']
    log = BatchedLog(tmp_path, interval=60)  # a whole last line: nothing added
    log.append_line('{"d": 4}')
    log.close()
    assert path.read_text().endswith('{"c": 3}\n{"d": 4}\n')
