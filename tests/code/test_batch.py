"""The batch job's checks and summary, without Spark (tests/e2e/test_batch.py runs it)."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from batch import inputs, job, spark
from projects.core.cli import StageError
from projects.core.project import having


def test_inputs_are_files_folders_and_globs_sorted_without_hidden_files(tmp_path) -> None:
    (tmp_path / "b.log").write_text("x\n")
    (tmp_path / "a.log").write_text("y\n")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.log").write_text("z\n")
    (tmp_path / ".old.partial-1").mkdir()
    (tmp_path / ".old.partial-1" / "d.log").write_text("w\n")
    names = [os.path.basename(f) for f in job.input_files(str(tmp_path))]
    assert names == ["a.log", "b.log", "c.log"]
    assert [os.path.basename(f) for f in job.input_files(str(tmp_path / "*.log"))] == [
        "a.log",
        "b.log",
    ]
    assert job.input_files("s3a://logs/day=1/") == ["s3a://logs/day=1/"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.log", "no such file or folder"),
        (lambda d: d / "*.nothing", "no file matches"),
        (lambda d: (d / "empty.log").touch() or d / "empty.log", "empty, nothing to score"),
        (lambda d: (d / "sub").mkdir() or d / "sub", "the folder has no file"),
    ],
)
def test_bad_input_is_named(tmp_path, make, message) -> None:
    with pytest.raises(StageError, match=message):
        job.input_files(str(make(tmp_path)))


def test_an_existing_output_is_never_written_over(tmp_path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(StageError, match="exists"):
        job.check_output(str(tmp_path / "out"))
    job.check_output(str(tmp_path / "new"))


def _fake_java(folder, version: str):
    java = folder / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-04-15' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return str(java)


def test_java_is_found_and_an_old_or_missing_one_is_named(tmp_path, monkeypatch) -> None:
    assert spark.java_version(_fake_java(tmp_path, "17.0.15")) == 17
    with pytest.raises(StageError, match="Java 8; Spark needs 17"):
        spark.java_version(_fake_java(tmp_path, "1.8.0_392"))
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(StageError, match=r"has no bin/java.*make java"):
        spark.java_version()


def test_mixed_csv_and_text_input_is_refused() -> None:
    assert inputs.csv_or_lines(["a.csv", "b.CSV"])
    assert not inputs.csv_or_lines(["a.txt"])
    with pytest.raises(StageError, match="mixes"):
        inputs.csv_or_lines(["a.csv", "b.txt"])


def test_the_summary_counts_rows_positives_and_rejected_reasons() -> None:
    examples = [{"file": "f", "text": f"t{i}", "reason": "r"} for i in range(9)]
    summary = job.summarize({"sessions": (200, 5), "users": (3, None)}, {"r": 9, "s": 1}, examples)
    assert summary["tables"]["sessions"] == {"rows": 200, "positives": 5, "positive_rate": 0.025}
    assert summary["tables"]["users"] == {"rows": 3}
    assert summary["rejected"]["rows"] == 10
    assert list(summary["rejected"]["reasons"]) == ["r", "s"]
    assert len(summary["rejected"]["examples"]) == job.EXAMPLES


def test_a_project_without_a_champion_is_named(tmp_path, monkeypatch) -> None:
    from projects.core import registry

    # a registry without the alias (a real empty store costs 10 s of migrations here)
    monkeypatch.setattr(registry, "version_by_alias", lambda name, alias: None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'unused.db'}")
    project = having("batch")[0]
    (tmp_path / "in.txt").write_text("1\n")
    with pytest.raises(StageError, match="has no @champion: run `make run`"):
        job.run(project, str(tmp_path / "in.txt"), str(tmp_path / "out"), engine="local")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_local_values_read_csv_columns_and_lines(tmp_path) -> None:
    pd.DataFrame({"text": ["a", "b,c"], "label": ["x", "y"]}).to_csv(tmp_path / "m.csv")
    (tmp_path / "m.txt").write_text("one\ntwo\n")
    frame = inputs.read_values([tmp_path / "m.csv"], "text")
    assert list(frame["value"]) == ["a", "b,c"]
    assert list(inputs.read_values([tmp_path / "m.txt"], "text")["value"]) == ["one", "two"]
    with pytest.raises(StageError, match="no `user_id` column"):
        inputs.read_values([tmp_path / "m.csv"], "user_id")


def test_every_project_with_a_batch_path_declares_its_tables() -> None:
    from projects.core.project import get

    for name in having("batch"):
        module = get(name).module("batch")
        assert module.TABLES and "rejected" not in module.TABLES
        for attribute in ("load", "spark", "local", "example"):
            assert callable(getattr(module, attribute)), f"{name}.batch.{attribute}"


def test_an_input_of_which_every_line_was_rejected_is_refused() -> None:
    summary = job.summarize(
        {"sessions": (0, 0)},
        {"not an HDFS_v1 log line": 3},
        [{"file": "f", "text": "x", "reason": "r"}],
    )
    with pytest.raises(StageError, match=r"all 3 lines were rejected.*not an HDFS_v1"):
        job.refuse_if_nothing_scored(summary)
    job.refuse_if_nothing_scored(job.summarize({"sessions": (1, 0)}, {"r": 3}, []))


@pytest.mark.parametrize(
    ("file", "path"),
    [
        ("file:/tmp/logs/a%20b.log", "/tmp/logs/a b.log"),
        ("file:///tmp/x.log.gz", "/tmp/x.log.gz"),
        ("s3a://bucket/day=1/a%20b.log", "s3a://bucket/day=1/a%20b.log"),
        ("/tmp/plain.log", "/tmp/plain.log"),
    ],
)
def test_spark_file_names_are_the_in_process_ones(file: str, path: str) -> None:
    assert spark.local_path(file) == path


@pytest.mark.parametrize(
    ("file", "given"),
    [
        ("/tmp/logs/a[1].log", r"/tmp/logs/a\[1\].log"),
        ("/tmp/logs/x{a,b}*?.log", r"/tmp/logs/x\{a,b\}\*\?.log"),
        ("/tmp/logs/plain.log", "/tmp/logs/plain.log"),
        ("s3a://bucket/day=1/*.log", "s3a://bucket/day=1/*.log"),
    ],
)
def test_local_files_are_given_to_spark_as_literal_paths_not_globs(file: str, given: str) -> None:
    assert spark.literal(file) == given


@pytest.mark.parametrize(
    ("text", "expected"),
    [("42", 42), (" -7 ", -7), ("+-5", None), ("4.0", None), ("9" * 19, None), ("", None)],
)
def test_only_whole_numbers_are_user_ids(text: str, expected: int | None) -> None:
    from projects.recommend.batch import user_id

    assert user_id(text) == expected
