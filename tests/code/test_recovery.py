"""projects/core/recovery.py on throwaway stores and files: what a killed pipeline run leaves."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from projects.core import paths, recovery, registry
from projects.core.recovery import PIPELINE, PROCESS, Process

MODEL = "a-model"  # a registered model of the throwaway store; no project's


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"])


@pytest.fixture
def gone() -> Process:
    """A process that ran and was killed."""
    child = _sleeper()
    found = Process.of(child.pid)
    child.kill()
    child.wait()
    return found


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An empty sqlite store, made once: creating one runs every migration of MLflow's schema."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def client(empty_store, tmp_path, monkeypatch) -> Iterator:
    """An MLflow client on a fresh sqlite store in `tmp_path`, also the default of
    `MlflowClient()`."""
    import mlflow
    from mlflow import MlflowClient

    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield MlflowClient(uri)
    finally:
        mlflow.set_tracking_uri(previous)


def test_a_process_is_alive_until_it_ends_and_a_reused_pid_is_told_apart() -> None:
    me = Process.of(os.getpid())
    assert me.alive() is True
    assert dataclasses.replace(me, start="1").alive() is False  # its PID, another process
    assert dataclasses.replace(me, boot="an-earlier-boot").alive() is False
    assert dataclasses.replace(me, host="elsewhere.example").alive() is None  # cannot tell
    child = _sleeper()
    found = Process.of(child.pid)
    assert found.alive() is True
    child.kill()
    deadline = time.monotonic() + 10
    while found.alive() and time.monotonic() < deadline:  # a zombie until reaped: gone already
        time.sleep(0.01)
    assert found.alive() is False
    child.wait()
    assert found.alive() is False


def test_tags_name_the_process_and_round_trip(monkeypatch) -> None:
    monkeypatch.delenv("DVC_STAGE", raising=False)
    tags = recovery.run_tags()
    assert tags[f"{PROCESS}.pid"] == str(os.getpid())
    assert tags[recovery.WORKSPACE_TAG] == str(paths.main_root())
    assert f"{PIPELINE}.pid" not in tags  # not run by DVC
    assert Process.from_tags(tags, PROCESS) == Process.of(os.getpid())
    assert recovery.in_use(tags) is True
    assert Process.from_tags({"project": "x"}, PROCESS) is None
    assert recovery.in_use({"project": "x"}) is None  # untagged: never judged


def test_the_pipeline_is_the_nearest_ancestor_that_dvc_did_not_start() -> None:
    """As DVC runs a stage: `$SHELL -c '<cmd>'` with DVC_STAGE set; this process plays DVC."""
    code = "from projects.core.recovery import pipeline_pid; print(pipeline_pid())"
    command = f"{sys.executable} -c '{code}'; true"  # `; true`: the shell stays in between
    env = {**os.environ, "DVC_STAGE": "a-stage", "PYTHONPATH": str(paths.ROOT)}
    done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == str(os.getpid()), done.stderr
    env.pop("DVC_STAGE")
    done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "None", done.stderr


def _run(client, tags: dict[str, str], status: str = "RUNNING") -> str:
    experiment = client.get_experiment_by_name("e") or client.get_experiment(
        client.create_experiment("e")
    )
    run = client.create_run(experiment.experiment_id, tags=tags)
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def _opened_by(process: Process, pipeline: Process | None = None, **extra: str) -> dict[str, str]:
    tags = process.tags(PROCESS) | (pipeline.tags(PIPELINE) if pipeline else {})
    return tags | {recovery.WORKSPACE_TAG: "/work/space"} | extra


def test_only_runs_whose_process_and_pipeline_are_gone_are_marked_failed(
    client, gone, caplog
) -> None:
    me = Process.of(os.getpid())
    elsewhere = dataclasses.replace(gone, host="elsewhere.example")
    runs = {
        "killed": _run(client, _opened_by(gone, gone)),
        "killed stage, pipeline alive": _run(client, _opened_by(gone, me)),
        "running": _run(client, _opened_by(me)),
        "another host's": _run(client, _opened_by(elsewhere)),
        "untagged": _run(client, {"project": "x"}),
        "finished": _run(client, _opened_by(gone), status="FINISHED"),
    }
    with caplog.at_level(logging.INFO, logger=recovery.__name__):
        assert recovery.fail_orphan_runs(client) == [runs["killed"]]
    status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {
        "killed": "FAILED",
        "killed stage, pipeline alive": "RUNNING",
        "running": "RUNNING",
        "another host's": "RUNNING",
        "untagged": "RUNNING",
        "finished": "FINISHED",
    }
    [line] = caplog.messages
    assert runs["killed"] in line and f"pid {gone.pid}" in line and "marked FAILED" in line
    assert recovery.fail_orphan_runs(client) == []  # and a second pass has nothing to do


def _version(client, tags: dict[str, str], status: str = "FINISHED") -> str:
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # already there
        client.create_registered_model(MODEL)
    run_id = _run(client, tags, status)
    return str(client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id).version)


def test_a_version_nothing_will_evaluate_is_deleted_and_no_other(client, gone, caplog) -> None:
    me = Process.of(os.getpid())
    pending = {recovery.EVALUATION_TAG: recovery.PENDING}
    versions = {
        "orphan": _version(client, _opened_by(gone, gone, **pending)),
        "orphan still RUNNING": _version(client, _opened_by(gone, gone, **pending), "RUNNING"),
        "recorded": _version(client, _opened_by(gone, gone, **pending)),
        "champion": _version(client, _opened_by(gone, gone, **pending)),
        "training": _version(client, _opened_by(me, **pending), "RUNNING"),
        "awaiting its evaluate": _version(client, _opened_by(gone, me, **pending)),
        "evaluated": _version(client, _opened_by(gone, gone, evaluation=recovery.LOGGED)),
        "another workspace's": _version(
            client, _opened_by(gone, gone, **pending) | {recovery.WORKSPACE_TAG: "/elsewhere"}
        ),
        "from before the tags": _version(client, {"project": "x"}),
    }
    client.set_registered_model_alias(MODEL, "champion", versions["champion"])
    recorded = {(MODEL, versions["recorded"])}
    with caplog.at_level(logging.INFO, logger=recovery.__name__):
        deleted = recovery.delete_orphan_versions(client, Path("/work/space"), recorded)
    orphans = {versions["orphan"], versions["orphan still RUNNING"]}
    assert {version for _, version in deleted} == orphans
    left = {str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")}
    assert left == set(versions.values()) - orphans
    assert len(caplog.messages) == 2
    assert all(line.startswith(f"deleted {MODEL} v") for line in caplog.messages)


def test_recorded_versions_skip_what_is_not_a_whole_record(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "model.json").write_text(json.dumps({"model_name": "m", "version": "3"}))
    (tmp_path / "b" / "model.json").write_text('{"model_name": "n", "vers')  # a killed write
    (tmp_path / "b" / "other.json").write_text("[1, 2]")
    assert recovery.recorded_versions(tmp_path) == {("m", "3")}


def test_recover_store_leaves_a_store_that_does_not_exist_uncreated(tmp_path, monkeypatch) -> None:
    store = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    recovery.recover_store(tmp_path)
    assert not store.exists()


def _write_rwlock(tmp_dir: Path, pids: dict[str, int], written: float) -> Path:
    path = tmp_dir / "rwlock"
    entries = {name: {"pid": pid, "cmd": "dvc repro"} for name, pid in pids.items()}
    path.write_text(json.dumps({"write": entries, "read": {"/r": list(entries.values())}}))
    os.utime(path, (written, written))
    return path


def test_rwlock_entries_of_gone_and_reused_pids_are_dropped(tmp_path, gone, caplog) -> None:
    child = _sleeper()  # started after the file was written: its PID cannot be the writer
    try:
        pids = {"/gone": gone.pid, "/booted": 1, "/reused": child.pid}
        path = _write_rwlock(tmp_path, pids, written=time.time() - 60)
        with caplog.at_level(logging.INFO, logger=recovery.__name__):
            recovery.clear_stale_rwlock(tmp_path)
    finally:
        child.kill()
        child.wait()
    kept = json.loads(path.read_text())
    assert kept == {
        "write": {"/booted": {"pid": 1, "cmd": "dvc repro"}},
        "read": {"/r": [{"pid": 1, "cmd": "dvc repro"}]},
    }
    assert caplog.messages == [f"removed 4 entries of DVC processes that are gone from {path}"]


def test_an_unreadable_rwlock_is_removed(tmp_path, caplog) -> None:
    (tmp_path / "rwlock").write_text("")  # what a kill between DVC's truncate and write leaves
    with caplog.at_level(logging.INFO, logger=recovery.__name__):
        recovery.clear_stale_rwlock(tmp_path)
    assert not (tmp_path / "rwlock").exists()
    assert "left it unreadable" in caplog.text


def test_a_half_written_dvc_lock_is_restored_only_after_a_killed_run(tmp_path, caplog) -> None:
    good = (paths.ROOT / "dvc.lock").read_text()
    cut = good[: good.index("outs:", len(good) // 2) + 2]  # mid-key, as a kill mid-write leaves
    lock = tmp_path / "dvc.lock"
    (tmp_path / recovery.LOCKFILE_BACKUP).parent.mkdir(parents=True)
    lock.write_text(good)
    recovery._save_dvc_lock(tmp_path)
    lock.write_text(good.replace("md5: ", "md5:  ", 1))  # valid and changed: kept as it is
    recovery.repair_dvc_lock(tmp_path, killed="4242")
    assert lock.read_text() == good.replace("md5: ", "md5:  ", 1)
    lock.write_text(cut)
    with caplog.at_level(logging.INFO, logger=recovery.__name__):
        recovery.repair_dvc_lock(tmp_path, killed="4242")
    assert lock.read_text() == good
    assert "half-written by the killed run (pid 4242)" in caplog.text


class _Output:
    """A child's merged output, read as it comes."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.text += line

    def wait_for(self, text: str, process: subprocess.Popen, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {text!r} in the output:\n{self.text}")
            time.sleep(0.02)


GUARDED = """
import sys
from pathlib import Path
from projects.core import cli, recovery
cli.configure_logging()
raise SystemExit(recovery.run_guarded(sys.argv[2:], Path(sys.argv[1])))
"""


def _guarded(root: Path, *command: str) -> tuple[subprocess.Popen, _Output]:
    """`run_guarded(command)` in workspace `root`, as `make repro` runs it, in its own process
    group."""
    env = {**os.environ, "PYTHONPATH": str(paths.ROOT)}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'no-store.db'}"  # nothing to recover
    process = subprocess.Popen(
        [sys.executable, "-c", GUARDED, str(root), *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # Ctrl-C as in a terminal, even when the tests run where SIGINT is ignored (a shell's
        # background job: Python then never turns SIGINT into KeyboardInterrupt)
        preexec_fn=_default_sigint,
    )
    return process, _Output(process)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_second_run_waits_for_the_first_and_a_killed_one_blocks_nothing(tmp_path) -> None:
    lock = tmp_path / recovery.LOCK_FILE
    first, _ = _guarded(tmp_path, "sleep", "600")  # killed below
    second = None
    try:
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert time.monotonic() < deadline and first.poll() is None, "the first never locked"
            time.sleep(0.02)
        second, output = _guarded(tmp_path, "true")
        output.wait_for(
            f"another `make repro` is running (pid {first.pid}); waiting for it", second
        )
        stopped, stopped_output = _guarded(tmp_path, "true")  # a third one, stopped by Ctrl-C
        stopped_output.wait_for("waiting for it", stopped)
        stopped.send_signal(signal.SIGINT)
        assert stopped.wait(timeout=120) == 130
        assert "Traceback" not in stopped_output.text
        assert second.poll() is None  # the second keeps waiting while the first runs
        os.killpg(first.pid, signal.SIGKILL)  # the whole group, as a lost terminal does
        first.wait()
        # it opens the (new) store to recover it first: a minute on a busy machine
        assert second.wait(timeout=120) == 0, output.text
        assert f"the previous run here (pid {first.pid}) was killed" in output.text
        assert lock.read_text() == ""  # the second ended cleanly
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_the_exit_status_of_the_command_is_the_runs(tmp_path) -> None:
    process, output = _guarded(tmp_path, "sh", "-c", "exit 3")
    assert process.wait(timeout=120) == 3, output.text


def test_make_repro_runs_the_pipelines_under_recovery() -> None:
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "repro"],
        cwd=paths.ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("python -m projects.core.recovery -- dvc repro ")


class _Killed(BaseException):
    """What the process would die of, at the point a test chooses."""


def _decision(candidate: str, champion: str | None, promoted: bool) -> registry.Decision:
    return registry.Decision(MODEL, "f1", candidate, 0.9, champion, 0.8, promoted)


def test_champion_moves_last_so_a_killed_promote_leaves_it_or_a_consistent_new_one(
    client, monkeypatch
) -> None:
    from mlflow import MlflowClient

    for _ in range(2):
        _version(client, {"project": "x"})
    client.set_registered_model_alias(MODEL, registry.CHAMPION, "1")
    client.set_registered_model_alias(MODEL, registry.CHALLENGER, "2")  # judged before
    set_alias = MlflowClient.set_registered_model_alias

    def killed_at_champion(self, name, alias, version):
        if alias == registry.CHAMPION:
            raise _Killed
        return set_alias(self, name, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", killed_at_champion)
    promoted = _decision("2", "1", promoted=True)
    with pytest.raises(_Killed):
        registry.apply(promoted)
    assert registry.version_by_alias(MODEL, registry.CHAMPION) == "1"  # not moved
    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", set_alias)
    # the rerun decides again, and completes
    registry.apply(promoted)
    assert registry.version_by_alias(MODEL, registry.CHAMPION) == "2"
    assert registry.version_by_alias(MODEL, registry.CHALLENGER) is None
    # killed after the move: the rerun finds it already champion and keeps why it is
    registry.apply(_decision("2", "2", promoted=True))
    assert client.get_model_version(MODEL, "2").tags["promotion"] == promoted.reason


def test_records_another_store_wrote_are_found(client, tmp_path) -> None:
    here = _version(client, {"project": "x"})
    run_id = client.get_model_version(MODEL, here).run_id
    records = {
        "this store's": {"model_name": MODEL, "version": here, "run_id": run_id},
        "a version this store lacks": {"model_name": MODEL, "version": "99", "run_id": run_id},
        "a model this store lacks": {"model_name": "other", "version": "1", "run_id": run_id},
        "another run's version": {"model_name": MODEL, "version": here, "run_id": "0" * 32},
    }
    for i, record in enumerate(records.values()):
        (tmp_path / f"p{i}").mkdir()
        (tmp_path / f"p{i}" / "model.json").write_text(json.dumps(record))
    (tmp_path / "p0" / "other.json").write_text("[1, 2]")  # not a record: left alone
    found = recovery.foreign_records(client, tmp_path)
    assert [p.parent.name for p in found] == ["p1", "p2", "p3"]
