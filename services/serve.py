"""Start every project's service with `bentoml serve`, wait until each is ready, and stop them
all together (`make serve`; Ctrl-C stops).

The projects are discovered (`projects.core.project`): each is served from the service its
`services/<name>/bentofile.yaml` names, on the port its config sets (`$<NAME>_PORT`, or
`--port name=port`, overrides it). Logs of all of them go to this terminal; each line names its
service.

How a server is stopped, whatever stops this supervisor:
- SIGINT (Ctrl-C), SIGTERM (`kill`, systemd) and SIGHUP (a closed terminal; ignored under
  `nohup`) stop every service; further signals while stopping are ignored and the stop finishes.
- `bentoml serve` runs circus: an arbiter that holds the listening socket, and workers, each
  in a session of its own, that serve HTTP. A stop sends SIGTERM to the arbiter's process group;
  the arbiter sends SIGTERM to its workers, and each worker (uvicorn) drains: it stops accepting,
  lets the requests in flight finish (at most `DRAIN_SECONDS`), runs the service's shutdown
  hooks (which flush the request and access logs) and exits. Whatever of the server is left
  after `STOP_SECONDS` is killed. A server's processes are found by a marker in their
  environment (`SERVER_ID`), so workers whose arbiter died are found too.
- If this supervisor is killed outright (SIGKILL, the OOM killer), the kernel sends each
  arbiter SIGTERM (`PR_SET_PDEATHSIG`), and the arbiter stops its workers as above.
- A worker that dies is replaced by its arbiter, which looks every 10 s (BentoML's setting);
  meanwhile connections wait on the socket the arbiter holds. An arbiter that dies stops this
  supervisor, which then stops everything else.
- While serving, it looks every `FOLLOW_SECONDS` whether an `@champion` has moved; if one has,
  it pins again, and the running services switch to the new champion without a restart
  (`Follower`; `--no-follow` keeps the versions pinned at start).
- The free-port check binds with `SO_REUSEADDR`, as the servers do, so connections left in
  TIME-WAIT by the last run do not keep it from starting again at once on the same ports.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from projects.core import cli, paths
from projects.core.cli import StageError
from projects.core.project import Project, choose, ports

if TYPE_CHECKING:
    import psutil

app = cli.app()
logger = logging.getLogger(__name__)

# How often `make serve` looks whether an @champion has moved (Follower).
FOLLOW_SECONDS = 10.0
# What stops the supervisor. SIGHUP is left alone when it is ignored (`nohup make serve`).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How long a worker lets the requests in flight finish after SIGTERM (uvicorn's
# --timeout-graceful-shutdown); then it cancels them and still flushes its logs. As long as the
# services let a request take, so that a stop cuts none short that would have been answered.
DRAIN_SECONDS = 30
# How long a stop waits for a server's processes before it kills what is left.
STOP_SECONDS = DRAIN_SECONDS + 10
# The environment variable that marks every process of one server: its arbiter, its workers and
# whatever they start (circus copies the arbiter's environment into each worker).
SERVER_ID = "MLOPS_SERVER_ID"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@dataclass
class Server:
    """One running `bentoml serve` process (circus' arbiter) and the workers it starts."""

    project: str
    host: str
    port: int
    process: subprocess.Popen
    id: str = ""  # the value of `SERVER_ID` in the environment of each of its processes

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def processes(self) -> list[psutil.Process]:
        """Every live process of this server, the arbiter included."""
        import psutil  # a dependency of bentoml

        found = []
        if not self.id:
            return found
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):  # gone, a zombie, or not ours to read
                if process.environ().get(SERVER_ID) == self.id:
                    found.append(process)
        return found


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on `host:port`. With `SO_REUSEADDR`, as the servers bind:
    only a socket bound there (a listener) makes it busy, not connections in TIME-WAIT."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel send the child SIGTERM when this process dies, even by
    SIGKILL (Linux's `PR_SET_PDEATHSIG`; None elsewhere). The signal comes when the thread that
    started the child ends, so start servers from the main thread."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the child
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before prctl took effect: no signal comes
            os._exit(128 + signal.SIGTERM)

    return preexec


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
    its output goes to `log`, or to this process's. It stops when this process dies."""
    if not port_is_free(host, port):
        raise StageError(f"{host}:{port} is in use; choose another port for {project}")
    server_id = uuid.uuid4().hex
    output = log.open("ab") if log else None
    process = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", target or Project(project).service,
         "--host", host, "--port", str(port),
         "--timeout-graceful-shutdown", str(DRAIN_SECONDS)],
        cwd=cwd,
        env=dict(os.environ if env is None else env) | {SERVER_ID: server_id},
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        start_new_session=True,  # out of reach of the terminal's signals: only stop() stops it
        preexec_fn=die_with_parent(),
    )  # fmt: skip
    if output:
        output.close()
    return Server(project, host, port, process, server_id)


def wait_ready(
    servers: list[Server], timeout: float = 120, stopped: Callable[[], bool] = lambda: False
) -> None:
    """Return when every server answers `/readyz` with 200, or as soon as `stopped()` is true.

    Raises:
        StageError: a server exited, or is not ready within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    waiting = list(servers)
    while waiting and not stopped():
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


def stop(servers: list[Server], timeout: float = STOP_SECONDS) -> None:
    """Stop every server gracefully, then kill whatever of it is left after `timeout` seconds.

    SIGTERM goes to each arbiter's process group; the arbiter stops its workers, and each worker
    drains. Workers whose arbiter is gone get the SIGTERM themselves.
    """
    import psutil

    workers = []
    for server in servers:
        # a group is signalled only while its leader is ours and unreaped: its id is not reused
        arbiter_alive = server.process.poll() is None
        if arbiter_alive:
            _signal_group(server.process.pid, signal.SIGTERM)
        for process in server.processes():
            if process.pid == server.process.pid:
                continue  # our own child: waited for below
            workers.append(process)
            if not arbiter_alive:
                with contextlib.suppress(psutil.Error):
                    process.terminate()
    deadline = time.monotonic() + timeout
    for server in servers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(max(0.0, deadline - time.monotonic()))
    _, alive = psutil.wait_procs(workers, timeout=max(0.0, deadline - time.monotonic()))
    for server in servers:
        if server.process.poll() is None:
            _signal_group(server.process.pid, signal.SIGKILL)  # first: no worker is respawned
            server.process.wait()
        alive += server.processes()  # a worker respawned after the SIGTERM is caught too
    if alive:
        logger.warning("killing %d process(es) that did not stop in %.0f s", len(alive), timeout)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=5)


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(group, signum)


def _stop_on_signals() -> list[int]:
    """Route the stop signals to a list: the serving loop checks it, so a signal never
    interrupts a start or a stop halfway. SIGINT is handled even when ignored, as a shell starts
    background jobs."""
    received: list[int] = []
    for signum in STOP_SIGNALS:
        if signum != signal.SIGHUP or signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, lambda number, _frame: received.append(number))
    return received


class Follower:
    """Pins again whenever a served project's `@champion` moves, so that its running service
    switches to it without a restart (`services.common.ModelService`).

    It looks every `every` seconds, in a thread: the first look imports MLflow, seconds of work
    that a stop signal must not wait for. It pins in a child process, so that this supervisor
    keeps answering signals while the new model is imported.
    """

    def __init__(self, projects: list[str], every: float = FOLLOW_SECONDS) -> None:
        self.projects = projects
        self.every = every
        self.due = time.monotonic() + every
        self.pinning: subprocess.Popen | None = None
        self.looking: threading.Thread | None = None
        self.moved: list[str] = []

    def poll(self) -> None:
        """Look, if it is time, and pin what the last look found; call it often."""
        if self.pinning is not None:
            if self.pinning.poll() is None:
                return
            if self.pinning.returncode:
                logger.error("pinning the new champion failed (status %d); the services keep "
                             "the models they have", self.pinning.returncode)  # fmt: skip
            self.pinning = None
        if self.looking is not None:
            if self.looking.is_alive():
                return
            self.looking = None
            if self.moved:
                logger.info("@champion moved for %s: pinning it; the services switch to it "
                            "without a restart", ", ".join(self.moved))  # fmt: skip
                self.pinning = subprocess.Popen([sys.executable, "-m", "services.pin"])
                return
        if time.monotonic() < self.due:
            return
        self.due = time.monotonic() + self.every
        self.looking = threading.Thread(target=self._look, name="look-champion", daemon=True)
        self.looking.start()

    def _look(self) -> None:
        from services.pin import moved

        try:
            self.moved = moved(self.projects)
        except Exception as exc:  # the registry out of reach must not stop the services
            self.moved = []
            logger.warning("could not look up @champion (%s); looking again in %.0f s",
                           str(exc).splitlines()[0], self.every)  # fmt: skip

    def close(self) -> None:
        # a look still running is a daemon thread: it ends with this process
        if self.pinning is not None and self.pinning.poll() is None:
            self.pinning.terminate()
            self.pinning.wait()


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
    follow: Annotated[
        bool,
        typer.Option(
            help="Switch each service to its project's new @champion, when one is promoted, "
            "without a restart."
        ),
    ] = True,
) -> None:
    """Serve every project's pinned champion until interrupted."""
    served = ports([p for p in choose(project) if p.has_service()], port or [])
    servers: list[Server] = []
    received = _stop_on_signals()
    follower = Follower(list(served)) if follow else None
    try:
        for name, number in served.items():
            servers.append(start(name, host, number))
        wait_ready(servers, stopped=lambda: bool(received))
        if not received:
            for server in servers:
                print(f"{server.project:<10} {server.url}  (API docs: {server.url}/)", flush=True)
            print("serving; Ctrl-C stops every service", flush=True)
        while not received:
            if gone := next((s for s in servers if s.process.poll() is not None), None):
                raise StageError(
                    f"the {gone.project} service exited with status {gone.process.returncode}"
                )
            if follower:
                follower.poll()
            time.sleep(0.1)  # a signal only sets `received`: this is how soon a stop begins
        logger.info("%s: stopping every service", signal.Signals(received[0]).name)
    finally:
        if follower:
            follower.close()
        stop(servers)


if __name__ == "__main__":
    cli.run(app)
