"""SIGKILL of a running pipeline at several points, and two runs at once, in a copy of the
repository of its own (the shared `repo` copy's version and alias counts stay as its tests
expect).

The runs are `make repro`'s command (`python -m projects.core.recovery -- dvc repro ...`) on the
spam pipeline only, the fastest; tests/code/test_recovery.py checks that `make repro` runs it.
Each run is its own process group, killed as a whole as a closed terminal would; the test waits
for the point to kill at by watching the output and the MLflow store, never by sleeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.repo_copy import copy_repository, registry, run_in

pytestmark = pytest.mark.e2e

MODEL = "spam-classifier"
PIPELINE = ("dvc", "repro", "spam-promote")
TIMEOUT = 900  # seconds a whole pipeline run may take on a busy machine


class Run:
    """A pipeline run in its own process group, its merged output read as it comes."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "projects.core.recovery", "--", *PIPELINE],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.output = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output += line

    def until(self, what: str, check, timeout: float = TIMEOUT) -> None:
        """Wait until `check()` is true; fail if the run ends first."""
        deadline = time.monotonic() + timeout
        while not check():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"the run ended or timed out before {what}:\n{self.output[-3000:]}")
            time.sleep(0.05)

    def until_stage(self, stage: str) -> None:
        self.until(f"stage {stage}", lambda: f"Running stage '{stage}'" in self.output)

    def kill(self) -> None:
        """SIGKILL the whole process group; return once none of it runs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self._reader.join(timeout=10)

    def finish(self) -> str:
        """Wait for a successful end; its output."""
        try:
            status = self.process.wait(timeout=TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.kill()
        self._reader.join(timeout=10)
        assert status == 0, self.output[-3000:]
        return self.output


def _set_param(root: Path, key: str, value: float) -> None:
    """Set the spam model's train param `key` (named once in params.yaml)."""
    params = root / "params.yaml"
    text, count = re.subn(rf"(?m)^(    {key}: ).*$", rf"\g<1>{value}", params.read_text())
    assert count == 1
    params.write_text(text)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A copy of the repository with an MLflow store (so that polling it never races with its
    creation), no pipeline run yet, and a smaller spam model, twice as fast to train and score:
    the faults are under test here, not the model."""
    root = tmp_path_factory.mktemp("faults") / "repo"
    env = copy_repository(root)
    _set_param(root, "calibration_folds", 2)
    _set_param(root, "char_ngram_max", 3)
    run_in(
        root, env, sys.executable, "-c", "from projects.core import tracking; tracking.start('x')"
    )
    return root, env


def _quietly(check):
    """`check`, where a store being written by a stage may fail a read for a moment."""

    def checked() -> bool:
        try:
            return bool(check())
        except Exception:  # sqlite busy for a moment, a version not there yet
            return False

    return checked


def _runs(client, filter_string: str = "") -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string)


def _running(client) -> list:
    return _runs(client, "attributes.status = 'RUNNING'")


def _versions(client) -> dict[str, object]:
    return {str(v.version): v for v in client.search_model_versions(f"name = '{MODEL}'")}


def _champion(client) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(MODEL, "champion").version)
    except MlflowException:
        return None


def _assert_recovered(client) -> None:
    """No run is left RUNNING, and every version's run has its test metrics."""
    assert _running(client) == []
    for version in _versions(client).values():
        run = client.get_run(version.run_id)
        assert "mcc" in run.data.metrics, f"v{version.version} has no test metrics"
        assert run.data.tags["evaluation"] == "logged"


def _assert_promotion_consistent(root: Path, client, champion_before: str | None) -> None:
    """`@champion` is the old one or the newly promoted one, as the promote report says."""
    report = json.loads((root / "reports/spam/promotion.json").read_text())
    candidate = report["candidate_version"]
    aliases = client.get_model_version(MODEL, candidate).aliases
    if report["promoted"]:
        assert _champion(client) == candidate and aliases == ["champion"]
    else:
        assert _champion(client) == champion_before and aliases == ["challenger"]


def test_killed_while_training_the_next_run_completes_and_fails_the_orphaned_run(
    workspace,
) -> None:
    root, env = workspace
    client = registry(root)
    run = Run(root, env)
    run.until_stage("spam-train")
    run.until("train opened its MLflow run", _quietly(lambda: _running(client)))
    run.kill()
    [orphan] = _running(client)  # the fault is real: its process is gone, the run RUNNING
    assert _versions(client) == {}

    output = Run(root, env).finish()
    assert f"run {orphan.info.run_id} " in output and "marked FAILED" in output
    assert client.get_run(orphan.info.run_id).info.status == "FAILED"
    _assert_recovered(client)
    assert _champion(client) == "1"
    assert client.get_model_version(MODEL, "1").tags["promotion"] == (
        "first model: it becomes champion"
    )
    tags = client.get_run(client.get_model_version(MODEL, "1").run_id).data.tags
    assert tags["workspace"] == str(root)
    assert {"process.pid", "process.start", "pipeline.pid", "pipeline.start"} <= set(tags)


def test_kills_in_evaluate_and_promote_leave_champion_and_a_second_run_waits_for_the_recovery(
    workspace,
) -> None:
    root, env = workspace
    client = registry(root)
    champion = _champion(client)
    _set_param(root, "C", 0.5)
    run = Run(root, env)
    run.until_stage("spam-evaluate")
    # evaluate reopens the training run to log to it: kill it there
    run.until(
        "evaluate reopened the training run",
        _quietly(lambda: client.get_run(_versions(client)["2"].run_id).info.status == "RUNNING"),
    )
    run.kill()
    assert _champion(client) == champion
    assert client.get_run(_versions(client)["2"].run_id).data.tags["evaluation"] == "pending"

    _set_param(root, "C", 0.25)  # train runs again: no evaluate will judge v2 now
    run = Run(root, env)
    run.until_stage("spam-promote")
    run.kill()
    assert "marked FAILED" in run.output  # its recovery failed the run evaluate had open
    assert _champion(client) == champion  # promote was killed before it could move it
    assert set(_versions(client)) == {"1", "2", "3"}

    first = Run(root, env)
    lock = root / ".dvc/tmp/repro.lock"
    holds = _quietly(lambda: lock.read_text().strip() == str(first.process.pid))
    first.until("the first run holds the lock", holds)
    second = Run(root, env)
    output = first.finish()
    waited = second.finish()
    assert f"another `make repro` is running (pid {first.process.pid}); waiting for it" in waited
    assert "Data and pipelines are up to date" in waited
    assert f"deleted {MODEL} v2: " in output
    # DVC had recorded train and evaluate of v3: only promote runs again
    assert "Running stage 'spam-train'" not in output
    assert "Running stage 'spam-evaluate'" not in output
    assert "Running stage 'spam-promote'" in output
    assert set(_versions(client)) == {"1", "3"}
    _assert_recovered(client)
    _assert_promotion_consistent(root, client, champion_before=champion)
