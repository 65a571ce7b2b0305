"""Recovery from killed pipeline runs: one `make repro` at a time, and nothing left half-done.

A pipeline run that is killed (SIGKILL, an out-of-memory kill, a lost terminal) cannot clean up
after itself. What it can leave behind, and what this module does about it:

- an MLflow run that stays RUNNING: training and evaluation tag each run they open with the host,
  PID and start time of their process and of the DVC process that runs the pipeline; a RUNNING run
  whose processes are both gone is marked FAILED;
- a model version that train registered but no evaluate judged (its run has no test metrics): it
  is deleted, unless it holds an alias, its processes still run, or a model record in this
  workspace names it (DVC then reruns evaluate on exactly that version);
- in DVC's `.dvc/tmp/rwlock`, an entry whose PID now belongs to another program, or a file a kill
  left unreadable; and a `dvc.lock` that a kill left half-written. Either would stop every
  later `dvc repro`.

`make repro` runs `python -m projects.core.recovery -- dvc repro ...`: it waits while another
`make repro` runs in this workspace, repairs what a killed one left, runs the command, and
recovers the MLflow store again once the command succeeded. Without a command it only recovers
the MLflow store (after a killed `dvc exp run` or `make retrain`, say).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from projects.core import cli, paths

log = logging.getLogger(__name__)
app = cli.app()

# Run tags. `process.*`: the process that last opened the run (train, then evaluate);
# `pipeline.*`: the DVC process that runs that stage, which will run the stages after it.
PROCESS, PIPELINE = "process", "pipeline"
WORKSPACE_TAG = "workspace"
# Whether evaluate has logged its metrics to a training run; recovery deletes only versions of
# runs still `pending`, so runs logged before this tag existed are never touched.
EVALUATION_TAG = "evaluation"
PENDING, LOGGED = "pending", "logged"

PROC = Path("/proc")
LOCK_FILE = Path(".dvc", "tmp", "repro.lock")  # its content: the PID of the run holding it
LOCKFILE_BACKUP = Path(".dvc", "tmp", "dvc.lock.before-repro")
# an rwlock entry is stale when its PID's process started this long after the file was written
# (the boot time in /proc/stat is whole seconds)
CLOCK_SLACK_SECONDS = 2.0


def _stat(pid: int) -> tuple[str, int, str] | None:
    """State, parent PID and start time (clock ticks after boot) of a process; None if none."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return fields[0], int(fields[1]), fields[19]


def _boot_id() -> str:
    try:
        return (PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Process:
    """A process, told apart from a later one that reuses its PID by its start time."""

    host: str
    boot: str  # the kernel's boot id: a process of an earlier boot is gone ("" off Linux)
    pid: int
    start: str  # clock ticks from boot to its start ("" off Linux)

    @classmethod
    def of(cls, pid: int) -> Process:
        """The process `pid` on this host, as it is now."""
        found = _stat(pid)
        return cls(socket.gethostname(), _boot_id(), pid, found[2] if found else "")

    def alive(self) -> bool | None:
        """Whether it still runs; None for another host's, which cannot be seen from here."""
        if self.host != socket.gethostname():
            return None
        if not PROC.is_dir():  # no /proc: the PID is all there is to go by
            return _pid_exists(self.pid)
        if self.boot != _boot_id():
            return False
        found = _stat(self.pid)
        # a zombie has finished, even when nobody reaped it (PID 1 of a container may not)
        return found is not None and found[0] not in ("Z", "X") and found[2] == self.start

    def tags(self, role: str) -> dict[str, str]:
        """The run tags that name this process in `role`, `PROCESS` or `PIPELINE`."""
        if role == PIPELINE:  # on the host and boot of the process
            return {f"{role}.pid": str(self.pid), f"{role}.start": self.start}
        return {
            f"{role}.host": self.host,
            f"{role}.boot_id": self.boot,
            f"{role}.pid": str(self.pid),
            f"{role}.start": self.start,
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str], role: str) -> Process | None:
        """The process `tags` name in `role`; None if they name none."""
        try:
            return cls(
                tags[f"{PROCESS}.host"],
                tags.get(f"{PROCESS}.boot_id", ""),
                int(tags[f"{role}.pid"]),
                tags.get(f"{role}.start", ""),
            )
        except (KeyError, ValueError):
            return None


def _environment_has(pid: int, assignment: bytes) -> bool:
    try:
        return assignment in (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def pipeline_pid() -> int | None:
    """The DVC process that runs this stage, None outside DVC.

    DVC sets `DVC_STAGE` for its stage commands only, so it is the nearest ancestor started
    without it (a shell may sit between).
    """
    stage = os.environ.get("DVC_STAGE")
    if stage is None:
        return None
    assignment = f"DVC_STAGE={stage}".encode()
    pid = os.getppid()
    while pid > 1 and _environment_has(pid, assignment):
        found = _stat(pid)
        pid = found[1] if found else 0
    return pid if pid > 1 else None


def run_tags() -> dict[str, str]:
    """Tags for a run this process opens: which process has it open, which pipeline runs that
    process, and which workspace (a `dvc exp run --temp` copy counts as its repository)."""
    tags = Process.of(os.getpid()).tags(PROCESS) | {WORKSPACE_TAG: str(paths.main_root())}
    if (pid := pipeline_pid()) is not None:
        tags |= Process.of(pid).tags(PIPELINE)
    return tags


def in_use(tags: Mapping[str, str]) -> bool | None:
    """Whether the process that last opened a run, or its pipeline, still runs; None when that
    cannot be told (a run without these tags, or another host's)."""
    opened = Process.from_tags(tags, PROCESS)
    if opened is None:
        return None
    pipeline = Process.from_tags(tags, PIPELINE)
    states = {opened.alive(), pipeline.alive() if pipeline else False}
    if True in states:
        return True
    return None if None in states else False


def _pages(search: Callable[[str | None], Any]) -> Iterator[Any]:
    """Every item of a paged MLflow search."""
    token = None
    while True:
        page = search(token)
        yield from page
        token = page.token
        if not token:
            return


def _runs(client: Any, filter_string: str) -> Iterator[Any]:
    """The active runs of every active experiment that match `filter_string`."""
    experiments = [
        e.experiment_id for e in _pages(lambda t: client.search_experiments(page_token=t))
    ]
    if experiments:
        yield from _pages(lambda t: client.search_runs(experiments, filter_string, page_token=t))


def fail_orphan_runs(client: Any) -> list[str]:
    """Mark FAILED every RUNNING run whose process and pipeline are gone; return their ids."""
    failed = []
    for run in _runs(client, "attributes.status = 'RUNNING'"):
        tags = run.data.tags
        if in_use(tags) is not False:
            continue
        client.set_terminated(run.info.run_id, "FAILED")
        failed.append(run.info.run_id)
        log.info(
            "run %s (%s) was left RUNNING by pid %s on %s, which is gone: marked FAILED",
            run.info.run_id,
            run.info.run_name,
            tags[f"{PROCESS}.pid"],
            tags[f"{PROCESS}.host"],
        )
    return failed


def recorded_versions(models_dir: Path) -> set[tuple[str, str]]:
    """The (model, version) pairs that the model records under `models_dir` name: the versions
    this workspace's evaluate and promote stages judge next."""
    found = set()
    for path in models_dir.rglob("*.json"):
        try:
            record = json.loads(path.read_text())
            found.add((str(record["model_name"]), str(record["version"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a record, or one a killed train half wrote: DVC reruns that train
    return found


def delete_orphan_versions(
    client: Any, workspace: Path, recorded: set[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Delete the model versions that train registered in `workspace` and nothing will evaluate.

    That is a version of a run still pending evaluation whose processes are gone, which holds no
    alias and which no model record names (`recorded`). Returns the (model, version) deleted.
    """
    deleted = []
    for run in _runs(client, f"tags.{EVALUATION_TAG} = '{PENDING}'"):
        tags = run.data.tags
        if tags.get(WORKSPACE_TAG) != str(workspace) or in_use(tags) is not False:
            continue
        run_id = run.info.run_id
        found = _pages(
            lambda t, run_id=run_id: client.search_model_versions(
                f"run_id = '{run_id}'", page_token=t
            )
        )
        for name, version in [(v.name, str(v.version)) for v in found]:
            # the alias is read from the version itself: search results may leave it out
            if (name, version) in recorded or client.get_model_version(name, version).aliases:
                continue
            client.delete_model_version(name, version)
            deleted.append((name, version))
            log.info(
                "deleted %s v%s: its run %s was never evaluated, and no pipeline will evaluate it",
                name,
                version,
                run_id,
            )
    return deleted


def foreign_records(client: Any, models_dir: Path) -> list[Path]:
    """The model records under `models_dir` that another tracking store wrote: their version is
    not in this store, or is another run's. With `STACK=team` switched on or off, the records
    and the stages after train would otherwise stand for models this store never saw."""
    from mlflow.exceptions import MlflowException

    foreign = []
    for path in sorted(models_dir.rglob("*.json")):
        try:
            record = json.loads(path.read_text())
            name, version, run_id = record["model_name"], str(record["version"]), record["run_id"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a record, or a half-written one: DVC reruns its train anyway
        try:
            found = client.get_model_version(name, version)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise  # the store could not say: leave the record alone
            found = None
        if found is None or found.run_id != run_id:
            foreign.append(path)
    return foreign


def forget_foreign_records(workspace: Path) -> bool:
    """Remove the model records another tracking store wrote (`foreign_records`), so that their
    trains run again on this one; True if any was removed."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from projects.core.tracking import tracking_uri

    try:
        foreign = foreign_records(MlflowClient(tracking_uri()), workspace / "models")
    except (MlflowException, OSError) as exc:
        log.warning("could not check the model records against %s: %s", tracking_uri(), exc)
        return False
    for path in foreign:
        log.info(
            "%s names a model version this tracking store (%s) does not have: its pipeline "
            "trains again here", path.relative_to(workspace), tracking_uri(),
        )  # fmt: skip
        path.unlink()
    return bool(foreign)


def recover(client: Any, workspace: Path) -> None:
    """Mark orphaned runs FAILED, then delete the model versions that no evaluate will judge."""
    fail_orphan_runs(client)
    delete_orphan_versions(client, workspace, recorded_versions(workspace / "models"))


def recover_store(workspace: Path) -> None:
    """`recover` on the tracking store. One that cannot be reached is a warning, not a failure:
    the stages that need it say what is wrong."""
    from projects.core.tracking import tracking_uri

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return  # no store yet: nothing to recover
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        recover(MlflowClient(uri), workspace)
    except (MlflowException, OSError) as exc:
        log.warning("the MLflow store at %s was not checked for orphans: %s", uri, exc)


def _lockfile_problem(path: Path) -> str | None:
    """Why DVC cannot read the lock file `path` (a `dvc.lock`), None if it can."""
    from dvc.exceptions import DvcException
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA
    from dvc.utils.serialize import load_yaml
    from voluptuous import Invalid

    try:
        data = load_yaml(path)
        if data:
            COMPILED_LOCKFILE_SCHEMA(data)
    except (DvcException, Invalid, OSError) as exc:
        return str(exc).splitlines()[0]
    return None


def repair_dvc_lock(root: Path, killed: str) -> None:
    """Restore `dvc.lock` from the copy made before the killed run started, if that run left it
    half-written (DVC rewrites it in place after every stage). The stages finished since the copy
    then run again; nothing else is lost."""
    lock, backup = root / "dvc.lock", root / LOCKFILE_BACKUP
    if not lock.exists() or (problem := _lockfile_problem(lock)) is None:
        return
    if not backup.exists() or _lockfile_problem(backup) is not None:
        log.warning("dvc.lock is unreadable (%s) and has no good copy to restore", problem)
        return
    shutil.copyfile(backup, lock)
    log.info(
        "dvc.lock was left half-written by the killed run (pid %s): restored the copy from "
        "before it started; the stages it had finished run again",
        killed,
    )


def _save_dvc_lock(root: Path) -> None:
    """Copy `dvc.lock` aside, atomically, for `repair_dvc_lock`."""
    lock, backup = root / "dvc.lock", root / LOCKFILE_BACKUP
    if lock.exists():
        partial = backup.with_name(backup.name + ".partial")
        shutil.copyfile(lock, partial)
        os.replace(partial, backup)


def _started_at(pid: int) -> float | None:
    """When a live process started (seconds since the epoch); None if there is none."""
    found = _stat(pid)
    if found is None or found[0] in ("Z", "X"):
        return None
    for line in (PROC / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return int(line.split()[1]) + int(found[2]) / os.sysconf("SC_CLK_TCK")
    return None


def _live_entries(entries: Any, written: float) -> tuple[Any, int]:
    """An rwlock section without the entries its processes cannot have written; and how many
    were dropped."""

    def live(info: Any) -> bool:
        started = _started_at(int(info["pid"]))
        return started is not None and started <= written + CLOCK_SLACK_SECONDS

    kept, dropped = {}, 0
    for path, infos in entries.items():
        listed = infos if isinstance(infos, list) else [infos]
        alive = [info for info in listed if live(info)]
        dropped += len(listed) - len(alive)
        if alive:
            kept[path] = alive if isinstance(infos, list) else alive[0]
    return kept, dropped


def clear_stale_rwlock(tmp_dir: Path) -> None:
    """Drop what killed DVC processes left in `.dvc/tmp/rwlock`, DVC's lock of stage files.

    DVC drops an entry whose PID is dead itself, but stops at one whose PID now belongs to
    another program (PIDs are reused: from 1 again in a restarted container) and at a file a kill
    left unreadable. An entry is stale when its process is gone or started after the file was
    last written, which its writer cannot have done. The file is edited under DVC's own guard.
    """
    path = tmp_dir / "rwlock"
    if not path.exists() or not PROC.is_dir():
        return
    with (tmp_dir / "rwlock.lock").open("a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            written = path.stat().st_mtime
            lock = json.loads(path.read_text())
            sections = {mode: _live_entries(lock.get(mode, {}), written) for mode in lock}
        except (ValueError, TypeError, AttributeError, KeyError):
            path.unlink()
            log.info("removed %s: a killed DVC process left it unreadable", path)
            return
        dropped = sum(count for _, count in sections.values())
        if dropped:
            partial = path.with_name("rwlock.partial")
            kept = {mode: entries for mode, (entries, _) in sections.items() if entries}
            partial.write_text(json.dumps(kept))
            os.replace(partial, path)
            log.info("removed %d entries of DVC processes that are gone from %s", dropped, path)


@contextlib.contextmanager
def workspace_lock(path: Path) -> Iterator[tuple[int, str | None]]:
    """Hold the lock of pipeline runs in a workspace, first waiting while another run holds it.

    The lock is the kernel's (`flock`), so it dies with its holder and a killed run never blocks
    the next. Yields the lock's file descriptor (a child that inherits it holds the lock too) and
    the PID of an earlier holder that was killed before it could clear the file, else None.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as file:  # appends: after truncate(0) writes start at 0
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            log.info("another `make repro` is running (pid %s); waiting for it", holder)
            fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        killed = file.read().strip() or None
        file.truncate(0)
        file.write(f"{os.getpid()}\n")
        file.flush()
        try:
            yield file.fileno(), killed
        finally:
            file.truncate(0)  # an empty file: this run was not killed


def _run(command: Sequence[str], lock_fd: int) -> int:
    """Run `command` holding the lock too; its exit status (128 + N when signal N killed it)."""
    try:
        process = subprocess.Popen(command, pass_fds=(lock_fd,))
    except OSError as exc:
        raise cli.StageError(f"cannot run {command[0]}: {exc.strerror}") from None
    # Ctrl-C reaches the command too; let it stop as it chooses, as DVC does with its stages
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        status = process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return status if status >= 0 else 128 - status


def run_guarded(command: Sequence[str], root: Path) -> int:
    """Run a pipeline command as the only one in the workspace `root`, repairing what a killed
    run left before it and recovering the MLflow store before it and after it succeeded.

    Returns:
        The command's exit status; 130 after Ctrl-C before the command started.
    """
    try:
        with workspace_lock(root / LOCK_FILE) as (lock_fd, killed):
            if killed:
                log.info(
                    "the previous run here (pid %s) was killed; recovering what it left", killed
                )
                repair_dvc_lock(root, killed)
            clear_stale_rwlock(root / ".dvc" / "tmp")
            recover_store(paths.main_root(root))
            if forget_foreign_records(root) and "repro" in command:
                # DVC would restore the removed records from its run cache: run the trains
                command = [*command, "--no-run-cache"]
            _save_dvc_lock(root)
            status = _run(command, lock_fd)
            if status == 0:
                recover_store(paths.main_root(root))
            return status
    except KeyboardInterrupt:  # while waiting for the lock, say
        return 128 + signal.SIGINT


@app.command()
def main(
    command: Annotated[
        list[str] | None,
        typer.Argument(help="A pipeline command to run under the workspace's lock, after `--`."),
    ] = None,
) -> None:
    """Recover from killed pipeline runs; with a command, run it as the only pipeline run here."""
    if not command:
        recover_store(paths.main_root())
        return
    raise SystemExit(run_guarded(command, paths.ROOT))


if __name__ == "__main__":
    cli.run(app)
