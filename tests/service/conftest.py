"""Every project's service, started once per session with `bentoml serve` on free ports.

The services serve the champions that the pipelines register in the shared repository copy
(tests/repo_copy.py), pinned into that copy's own BentoML home; their request logs go to a
temporary directory.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from projects.core.cli import StageError
from projects.core.project import discover
from services.serve import Server, start, stop, wait_ready
from tests.repo_copy import run_in

# a little over the request log's flush interval (services.common.RequestLog)
FLUSH_WAIT = 1.3


@dataclass
class Service:
    """One running service, its client, its server log and its request log."""

    server: Server
    client: httpx.Client
    log: Path
    requests_dir: Path

    def post(self, route: str, body: object) -> httpx.Response:
        return self.client.post(route, json=body)

    def records(self) -> list[dict]:
        """Every request-log record written so far."""
        return [
            json.loads(line)
            for path in sorted(self.requests_dir.glob("*.jsonl"))
            for line in path.read_text().splitlines()
        ]

    def settled(self) -> int:
        """How many records there are once earlier requests' records have been flushed."""
        time.sleep(FLUSH_WAIT)
        return len(self.records())

    def records_after(self, before: int, expected: int, timeout: float = 5) -> list[dict]:
        """The records after the first `before`, once `expected` of them have been flushed."""
        deadline = time.monotonic() + timeout
        while len(self.records()) < before + expected and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(FLUSH_WAIT)  # nothing more may arrive
        return self.records()[before:]

    def errors_logged(self) -> list[str]:
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines() if "ERROR" in line or "Traceback" in line]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def services(repo, tmp_path_factory) -> dict[str, Service]:
    root, env = repo
    run_in(root, env, "make", "--no-print-directory", "repro")  # whatever has not run yet
    here = tmp_path_factory.mktemp("services")
    env = env | {"BENTOML_HOME": str(root / "bentoml"), "MONITORING_DIR": str(here / "monitoring")}
    run_in(root, env, sys.executable, "-m", "services.pin")
    served = [project.name for project in discover() if project.has_service()]
    servers = [
        start(project, "127.0.0.1", free_port(), root, env, here / f"{project}.log")
        for project in served
    ]
    try:
        wait_ready(servers, timeout=180)
    except StageError as exc:
        stop(servers)
        logs = "\n".join((here / f"{p}.log").read_text()[-2000:] for p in served)
        pytest.fail(f"{exc}\n{logs}")
    running = {
        s.project: Service(
            s,
            httpx.Client(base_url=s.url, timeout=30),
            here / f"{s.project}.log",
            here / "monitoring" / s.project / "requests",
        )
        for s in servers
    }
    yield running
    for service in running.values():
        service.client.close()
    stop(servers)
