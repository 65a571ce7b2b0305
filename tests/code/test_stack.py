"""The stack's pieces that need no server: the drift metrics' exposition."""

from __future__ import annotations

import json

from stack.exporter import exposition


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
