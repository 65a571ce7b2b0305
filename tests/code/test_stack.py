"""The stack's pieces that need no server: the drift metrics' exposition, the alerting rules and
Prometheus's configuration, the choice of stores, the importer's summary."""

from __future__ import annotations

import json

import pytest

from projects.core.cli import StageError
from stack.__main__ import _storage
from stack.exporter import exposition
from stack.importer import Imported
from stack.storage import bucket_of, check_bucket


def test_verdicts_become_prometheus_gauges(tmp_path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    for project, verdict, share in (("a", "drift", 0.75), ("b", "no_drift", 0.1)):
        (tmp_path / project).mkdir()
        latest = {"project": project, "verdict": verdict, "requests": 500,
                  "drift_share": share, "judged_at": 1_700_000_000.0}  # fmt: skip
        (tmp_path / project / "latest.json").write_text(json.dumps(latest))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "latest.json").write_text('{"project": "c", "verd')  # cut short
    families = {f.name: f for f in text_string_to_metric_families(exposition(tmp_path))}
    values = {
        (name, sample.labels.get("project")): sample.value
        for name, family in families.items()
        for sample in family.samples
    }
    assert values[("mlops_monitor_drift", "a")] == 1
    assert values[("mlops_monitor_drift", "b")] == 0
    assert values[("mlops_monitor_drift_share", "a")] == 0.75
    assert values[("mlops_monitor_window_requests", "b")] == 500
    assert values[("mlops_monitor_last_run_timestamp_seconds", "a")] == 1_700_000_000
    assert values[("mlops_monitor_unreadable_files", None)] == 1
    assert ("mlops_monitor_drift", "c") not in values


def test_nothing_monitored_yet_is_an_empty_exposition(tmp_path) -> None:
    assert "mlops_monitor_unreadable_files 0" in exposition(tmp_path)
    assert 'project="' not in exposition(tmp_path)


def test_promtool_accepts_the_alerting_rules() -> None:
    import subprocess

    from stack import prometheus

    done = subprocess.run(
        [prometheus.program("promtool"), "check", "rules", str(prometheus.RULES)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_scrapes_every_service_and_the_exporter(tmp_path) -> None:
    from stack import prometheus

    settings = prometheus.configuration({"a": 3001, "b": 3002}, 9108, tmp_path / "rules.yml")
    jobs = {job["job_name"]: job["static_configs"] for job in settings["scrape_configs"]}
    assert jobs["services"] == [
        {"targets": ["127.0.0.1:3001"], "labels": {"project": "a"}},
        {"targets": ["127.0.0.1:3002"], "labels": {"project": "b"}},
    ]
    assert jobs["monitoring"] == [{"targets": ["127.0.0.1:9108"]}]
    assert settings["rule_files"] == [str(tmp_path / "rules.yml")]


def test_the_first_stores_are_kept_and_other_ones_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STACK_DIR", str(tmp_path))
    monkeypatch.delenv("STACK_DVC_REMOTE", raising=False)
    monkeypatch.setenv("STACK_ARTIFACTS", str(tmp_path / "artifacts"))
    first = _storage({})
    assert first == {"artifacts": str(tmp_path / "artifacts"), "dvc_remote": ""}
    monkeypatch.delenv("STACK_ARTIFACTS")
    assert _storage({"storage": first}) == first  # kept without the setting
    monkeypatch.setenv("STACK_ARTIFACTS", str(tmp_path / "elsewhere"))
    with pytest.raises(StageError, match="keeps its artifacts in"):
        _storage({"storage": first})


def test_an_s3_url_must_name_a_bucket() -> None:
    assert bucket_of("s3://team-ml/mlflow") == "team-ml"
    with pytest.raises(StageError, match="names no bucket"):
        bucket_of("s3:///mlflow")
    check_bucket("/a/local/folder", "STACK_ARTIFACTS")  # nothing to check, no boto3 needed


def test_the_importer_says_what_it_copied_and_what_it_left() -> None:
    said = Imported(runs=2, versions=2, aliases=["m@champion -> v2"],
                    kept_aliases=["m@challenger"]).summary()  # fmt: skip
    assert said == (
        "2 runs and 2 model versions copied; aliases set: m@champion -> v2; aliases the "
        "server already points elsewhere, left as they are: m@challenger"
    )
