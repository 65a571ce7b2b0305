"""The stack's long-running processes: started in sessions of their own, known by PID files under
`.stack/run/`, stopped by PID whatever state an earlier run left."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from projects.core.cli import StageError
from services.serve import port_is_free
from stack import config


def require_free(name: str, port: int) -> None:
    """A `StageError` naming the port and the setting that moves it if it is taken."""
    if not port_is_free(config.HOST, port):
        raise StageError(
            f"{config.HOST}:{port}, {name}'s port, is in use by another program; stop it or "
            f"choose another port: STACK_{name.upper()}_PORT=<port> make stack"
        )


@dataclass(frozen=True)
class Daemon:
    """One process of the stack: `name`, its PID file and its log."""

    name: str

    @property
    def pid_file(self) -> Path:
        return config.run_dir() / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return config.log_dir() / f"{self.name}.log"

    def pid(self) -> int | None:
        """The PID of the running process, or None; a PID file whose process is gone (a
        crash, a reboot) is stale and removed."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            process = psutil.Process(pid)
            alive = process.status() != psutil.STATUS_ZOMBIE
            # a PID is reused after a reboot: the process must be the one this file named
            alive = alive and process.create_time() <= self.pid_file.stat().st_mtime + 1
        except (psutil.Error, OSError):
            alive = False
        if not alive:
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def launch(
        self,
        command: Sequence[str],
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Launch:
        """Start `command` in a session of its own, its output in the log, and record its PID
        at once (so that `down` finds it even if this start is interrupted); `Launch.wait`
        waits until `ready()`. Launching several first and then waiting lets them start
        side by side."""
        config.run_dir().mkdir(parents=True, exist_ok=True)
        config.log_dir().mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=os.environ | (env or {}), cwd=config.ROOT, start_new_session=True,
            )  # fmt: skip
        self.pid_file.write_text(f"{process.pid}\n")
        return Launch(self, process, ready, timeout)

    def start(
        self,
        command: Sequence[str],
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> int:
        """`launch`, then wait until `ready()`; the PID."""
        return self.launch(command, ready, env, timeout).wait()

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> bool:
        """Stop the process (`signum`, then SIGKILL after `timeout`) and what it started;
        False if it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            process = psutil.Process(pid)
            family = [process, *process.children(recursive=True)]
        except psutil.Error:
            family = []
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        _, alive = psutil.wait_procs(family, timeout=timeout)
        for left in alive:
            with contextlib.suppress(psutil.Error):
                left.kill()
        psutil.wait_procs(alive, timeout=5)
        self.pid_file.unlink(missing_ok=True)
        return True


@dataclass(frozen=True)
class Launch:
    """A daemon's process on its way up."""

    daemon: Daemon
    process: subprocess.Popen
    ready: Callable[[], bool]
    timeout: float

    def wait(self) -> int:
        """Wait until the process is ready and return its PID; if it exits or is not ready
        within the time limit, kill it and raise a `StageError` with the end of its log."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(Exception):  # not listening yet, say
                if self.ready():
                    return self.process.pid
            time.sleep(0.25)
        log = self.daemon.log_file
        tail = log.read_text(errors="replace")[-1500:]
        status = self.process.poll()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.daemon.pid_file.unlink(missing_ok=True)
        what = (f"exited at start (status {status})" if status is not None
                else f"was not ready within {self.timeout:.0f} s")  # fmt: skip
        raise StageError(f"{self.daemon.name} {what}; its log ({log}) ends:\n{tail}")
