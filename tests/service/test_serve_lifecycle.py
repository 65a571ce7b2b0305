"""`python -m services.serve` as supervisors run it: stopped by repeated signals to its process
group, killed outright, and started again at once on the same port.

Each test runs the real supervisor in a process group of its own, in the shared repository copy,
and checks "gone" by the processes it started (the supervisor's descendants, found before the
signal) and by the port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil  # a dependency of bentoml
import pytest

from services.serve import STOP_SECONDS, port_is_free
from tests.repo_copy import run_in
from tests.service.conftest import free_port

pytestmark = pytest.mark.service

# the projects whose services start fastest; two, to see every server stopped, not just one
PROJECTS = ("traffic", "recommend")
READY_SECONDS = 180
# a stop takes about a second with nothing in flight; this is the supervisor's own bound
GONE_SECONDS = STOP_SECONDS + 5


@dataclass
class Supervisor:
    """One `python -m services.serve` and the ports it serves."""

    process: subprocess.Popen
    ports: dict[str, int]
    log: Path
    started: list[psutil.Process] = field(default_factory=list)

    def wait_serving(self) -> list[psutil.Process]:
        """Wait until it says it serves; return every process it started (its servers'
        arbiters and their workers)."""
        deadline = time.monotonic() + READY_SECONDS
        while "serving;" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the supervisor did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.25)
        self.started = psutil.Process(self.process.pid).children(recursive=True)
        return self.started

    def signal_group(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)


@pytest.fixture(scope="module")
def pinned(repo, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The copy with every champion pinned, and an environment whose logs go to a temporary
    directory; shared by this module's tests."""
    root, env = repo
    run_in(root, env, "make", "--no-print-directory", "repro")  # whatever has not run yet
    logs = tmp_path_factory.mktemp("lifecycle")
    env = env | {"BENTOML_HOME": str(root / "bentoml"), "MONITORING_DIR": str(logs)}
    run_in(root, env, sys.executable, "-m", "services.pin")
    return root, env


@pytest.fixture
def launch(pinned, tmp_path) -> Iterator:
    """Start supervisors; afterwards kill whatever of them and their servers is left."""
    root, env = pinned
    started: list[Supervisor] = []

    def run(ports: dict[str, int]) -> Supervisor:
        log = tmp_path / f"supervisor-{len(started)}.log"
        arguments = [a for name, port in ports.items() for a in ("--project", name, "--port",
                     f"{name}={port}")]  # fmt: skip
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "services.serve", *arguments],
                cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        started.append(Supervisor(process, ports, log))
        return started[-1]

    yield run
    for supervisor in started:
        if supervisor.process.poll() is None:
            supervisor.signal_group(signal.SIGKILL)
            supervisor.process.wait()
        for process in supervisor.started:
            with contextlib.suppress(psutil.Error):  # gone, as it should be
                process.kill()


def gone_within(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """Wait until every process has exited (a zombie counts as exited); return those left."""
    deadline = time.monotonic() + seconds
    while True:
        left = [p for p in processes if _alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def binds_without_reuse(port: int) -> bool:
    """Whether a plain bind (no SO_REUSEADDR) succeeds: not with a connection in TIME-WAIT."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_three_sigterms_to_the_group_stop_every_server(launch) -> None:
    supervisor = launch({name: free_port() for name in PROJECTS})
    started = supervisor.wait_serving()
    arbiters = psutil.Process(supervisor.process.pid).children()
    assert len(arbiters) == len(PROJECTS)
    assert len(started) > len(arbiters)  # their workers, in sessions of their own
    for _ in range(3):
        supervisor.signal_group(signal.SIGTERM)
        time.sleep(0.05)
    assert supervisor.process.wait(GONE_SECONDS) == 0
    assert gone_within(started, 1) == []
    for port in supervisor.ports.values():
        assert not listening(port)
        assert port_is_free("127.0.0.1", port)
    assert "Traceback" not in supervisor.log.read_text(errors="replace")


def test_a_killed_supervisor_leaves_no_server(launch) -> None:
    supervisor = launch({PROJECTS[0]: free_port()})
    started = supervisor.wait_serving()
    supervisor.process.kill()
    supervisor.process.wait()
    assert gone_within(started, GONE_SECONDS) == []
    (port,) = supervisor.ports.values()
    assert not listening(port)
    # the workers stopped as on any stop: they drained and ran the shutdown hooks
    assert "Completed cleanup hook" in supervisor.log.read_text(errors="replace")


def test_it_starts_again_at_once_on_the_same_port(launch) -> None:
    port = free_port()
    first = launch({PROJECTS[0]: port})
    first.wait_serving()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.get("/readyz").status_code == 200
        first.signal_group(signal.SIGTERM)  # the server closes the idle connection: TIME-WAIT
        assert first.process.wait(GONE_SECONDS) == 0
    assert not binds_without_reuse(port), "no connection in TIME-WAIT: the test proves nothing"
    second = launch({PROJECTS[0]: port})
    second.wait_serving()
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    second.signal_group(signal.SIGTERM)
    assert second.process.wait(GONE_SECONDS) == 0
