"""Batch scoring on Spark (local mode) against each project's champion in the shared copy.

One Spark session serves the module; the inputs are small (each project's `batch.example`).
Every project's Spark output must equal its in-process path's: every verdict equal, every score
to 1e-9. `tests/code/test_batch.py` has the checks that need no Spark.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch import job
from batch.spark import session
from projects.core.project import get, having
from tests.repo_copy import registry, run_in

pytestmark = pytest.mark.e2e
PROJECTS = having("batch")
EXAMPLE_LINES = 2000


@pytest.fixture(scope="module")
def spark():
    """One local Spark session for the module (the jobs reuse it)."""
    if importlib.util.find_spec("pyspark") is None:
        pytest.fail("pyspark is missing: `make test` installs the spark dependency group")
    started = session("local[2]", "tests")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def champions(repo):
    """The shared copy's champions (its pipelines run now if no test has run them yet), and
    its MLflow store as the tracking store of this process."""
    root, env = repo
    run_in(root, env, "make", "--no-print-directory", "repro")
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    yield root, env
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def read_table(folder: Path, key: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.read_parquet(folder)
    return frame.sort_values(list(key), kind="stable").reset_index(drop=True)


def assert_same(spark_table: pd.DataFrame, local_table: pd.DataFrame, where: str) -> None:
    """Equal tables: floats (and lists of floats) to 1e-9, everything else exactly."""
    assert list(spark_table.columns) == list(local_table.columns), where
    assert len(spark_table) == len(local_table), where
    for column in spark_table.columns:
        left, right = spark_table[column].tolist(), local_table[column].tolist()
        if spark_table[column].dtype.kind == "f":
            np.testing.assert_allclose(left, right, rtol=0, atol=1e-9, err_msg=f"{where}.{column}")
        elif left and isinstance(left[0], (list, np.ndarray)):
            for a, b in zip(left, right, strict=True):
                a, b = list(a), list(b)
                if a and isinstance(a[0], float):
                    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, err_msg=column)
                else:
                    assert a == b, f"{where}.{column}"
        else:
            assert left == right, f"{where}.{column}"


@pytest.mark.parametrize("project", PROJECTS)
def test_spark_scores_equal_the_in_process_path(project, spark, champions, tmp_path) -> None:
    root, _ = champions
    module = get(project).module("batch")
    module.example(tmp_path / "in", EXAMPLE_LINES)
    summaries = {}
    for engine in job.ENGINES:
        summaries[engine] = job.run(project, str(tmp_path / "in"), str(tmp_path / engine), engine)
    champion = registry(root).get_model_version_by_alias(get(project).model_name, "champion")
    for engine, summary in summaries.items():
        assert summary["version"] == str(champion.version)
        assert json.loads((tmp_path / engine / "summary.json").read_text()) == summary
        assert summary["rejected"]["rows"] >= 1, "every example holds a line of another format"
    assert summaries["spark"]["tables"] == summaries["local"]["tables"]
    assert summaries["spark"]["rejected"]["reasons"] == summaries["local"]["rejected"]["reasons"]
    for name, table in module.TABLES.items():
        scored = read_table(tmp_path / "spark" / name, table.key)
        assert len(scored) > 0 and set(scored["model_version"]) == {str(champion.version)}
        assert_same(scored, read_table(tmp_path / "local" / name, table.key), f"{project}.{name}")
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_a_failed_job_leaves_no_output(spark, champions, tmp_path, monkeypatch) -> None:
    project = PROJECTS[0]
    module = get(project).module("batch")
    module.example(tmp_path / "in", 50)
    original = module.spark

    def failing(session, files, model):
        tables = original(session, files, model)
        name = next(iter(module.TABLES))
        return tables | {name: tables[name].selectExpr("raise_error('a disk failed') AS x")}

    monkeypatch.setattr(module, "spark", failing)
    with pytest.raises(Exception, match="a disk failed"):
        job.run(project, str(tmp_path / "in"), str(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_the_job_file_runs_unchanged_under_spark_submit(champions, tmp_path) -> None:
    root, env = champions
    project = PROJECTS[0]
    get(project).module("batch").example(tmp_path / "in", 200)
    spark_submit = Path(sys.executable).parent / "spark-submit"
    env = env | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    done = run_in(
        root, env, str(spark_submit), "--master", "local[1]", "--conf", "spark.ui.enabled=false",
        "batch/job.py", "--project", project, "--input", str(tmp_path / "in"),
        "--output", str(tmp_path / "out"),
    )  # fmt: skip
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["master"] == "local[1]" and summary["engine"] == "spark"
    assert (tmp_path / "out" / "summary.json").exists()


def test_bad_input_is_one_line_naming_it(champions, tmp_path) -> None:
    root, env = champions
    cases = {
        "no such file or folder": str(tmp_path / "missing.log"),
        "empty, nothing to score": str((tmp_path / "empty.log").resolve()),
    }
    (tmp_path / "empty.log").touch()
    for message, given in cases.items():
        done = run_in(
            root, env, sys.executable, "-m", "batch.job", "--project", PROJECTS[0],
            "--input", given, "--output", str(tmp_path / "out"), ok=False,
        )  # fmt: skip
        assert done.returncode == 1
        assert message in done.stderr and "Traceback" not in done.stderr
