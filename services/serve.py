"""Start every project's service with `bentoml serve`, wait until each is ready, and stop them
all together (`make serve`; Ctrl-C stops).

The projects are discovered (`projects.core.project`): each is served from the service its
`services/<name>/bentofile.yaml` names, on the port its config sets (`$<NAME>_PORT`, or
`--port name=port`, overrides it). Each service runs as its own process group, so stopping one
stops its workers too. Logs of all of them go to this terminal; each line names its service.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from projects.core import cli, paths
from projects.core.cli import StageError
from projects.core.project import Project, choose, ports

app = cli.app()


@dataclass
class Server:
    """One running `bentoml serve` process."""

    project: str
    host: str
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def start(
    project: str,
    host: str,
    port: int,
    cwd: Path = paths.ROOT,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    target: str | None = None,
) -> Server:
    """Start one project's service (or `target`: a built Bento's tag, another service);
    its output goes to `log`, or to this process's."""
    if not port_is_free(host, port):
        raise StageError(f"{host}:{port} is in use; choose another port for {project}")
    output = log.open("ab") if log else None
    process = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", target or Project(project).service,
         "--host", host, "--port", str(port)],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        start_new_session=True,  # its own process group: stopping it stops its workers
    )  # fmt: skip
    if output:
        output.close()
    return Server(project, host, port, process)


def wait_ready(servers: list[Server], timeout: float = 120) -> None:
    """Return when every server answers `/readyz` with 200.

    Raises:
        StageError: a server exited, or is not ready within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    waiting = list(servers)
    while waiting:
        for server in list(waiting):
            if server.process.poll() is not None:
                raise StageError(
                    f"the {server.project} service exited with status "
                    f"{server.process.returncode} before it was ready (see its log)"
                )
            if server.is_ready():
                waiting.remove(server)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(s.project for s in waiting)
            raise StageError(f"not ready after {timeout:.0f} s: {names}")
        if waiting:
            time.sleep(0.25)


def stop(servers: list[Server], timeout: float = 15) -> None:
    """Stop every server's process group: SIGTERM, then SIGKILL after `timeout` seconds."""
    for server in servers:
        if server.process.poll() is None:
            _signal_group(server.process, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for server in servers:
        try:
            server.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(server.process, signal.SIGKILL)
            server.process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signum)


@app.command()
def main(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[
        list[str] | None,
        typer.Option(
            help="name=port for one project (repeat); else $<NAME>_PORT, else its config's."
        ),
    ] = None,
    project: Annotated[
        list[str] | None,
        typer.Option(help="Serve only this project (repeat); every project by default."),
    ] = None,
) -> None:
    """Serve every project's pinned champion until interrupted."""
    served = ports([p for p in choose(project) if p.has_service()], port or [])
    servers: list[Server] = []
    # Ctrl-C, and SIGTERM from `kill` or a supervisor, stop the services; SIGINT is set
    # explicitly because a shell starts background jobs with it ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for name, number in served.items():
            servers.append(start(name, host, number))
        wait_ready(servers)
        for server in servers:
            print(f"{server.project:<10} {server.url}  (API docs: {server.url}/)", flush=True)
        print("serving; Ctrl-C stops every service", flush=True)
        while all(s.process.poll() is None for s in servers):
            time.sleep(0.5)
        gone = next(s for s in servers if s.process.poll() is not None)
        raise StageError(f"the {gone.project} service exited with status {gone.process.returncode}")
    except KeyboardInterrupt:
        pass
    finally:
        stop(servers)


if __name__ == "__main__":
    cli.run(app)
