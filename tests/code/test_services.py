"""The services' shared parts, without a server: the request log, the body guard, the pins."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import yaml

from projects.core import paths
from projects.core.cli import StageError
from projects.core.project import discover
from services.common import BodyGuard, RequestLog, read_pinned


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
