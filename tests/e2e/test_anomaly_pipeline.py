"""`dvc repro` of the anomaly pipeline in the temporary copy, real MLflow store."""

from __future__ import annotations

import json

import pytest

from tests.repo_copy import registry, run_in

pytestmark = pytest.mark.e2e


def test_repro_of_anomaly_registers_a_champion(repo) -> None:
    root, env = repo
    done = run_in(root, env, "dvc", "repro", "--downstream", "anomaly-prepare")
    assert "Running stage 'spam-" not in done.stdout
    assert "Running stage 'recommend-" not in done.stdout
    metrics = json.loads((root / "metrics/anomaly.json").read_text())
    assert set(metrics) == {"precision", "recall", "f1", "supervised"}
    assert set(metrics["supervised"]) == {"precision", "recall", "f1"}
    assert metrics["f1"] > 0.8
    client = registry(root)
    champion = client.get_model_version_by_alias("log-anomaly-detector", "champion")
    assert str(champion.version) == "1"
    run = client.get_run(champion.run_id)
    assert run.data.metrics["f1"] == pytest.approx(metrics["f1"])
    assert "supervised_f1" in run.data.metrics and "threshold" in run.data.params
    artifacts = {a.path for a in client.list_artifacts(champion.run_id, "plots")}
    assert {"plots/score_distribution.png", "plots/precision_recall.png"} <= artifacts


def test_bad_labels_stop_at_validate_and_change_nothing(repo) -> None:
    root, env = repo
    labels = root / "data/raw/anomaly/anomaly_label.csv"
    original = labels.read_bytes()
    recorded = (root / "data.dvc").read_text()
    try:
        labels.write_text(original.decode().replace(",Anomaly\n", ",Broken\n", 1))
        done = run_in(root, env, "dvc", "repro", "--downstream", "anomaly-prepare", ok=False)
        assert done.returncode != 0
        output = done.stdout + done.stderr
        assert "anomaly-validate" in output and "Traceback" not in output
        assert "Label: expect_column_values_to_be_in_set" in output
        assert (root / "data.dvc").read_text() == recorded
        client = registry(root)
        versions = client.search_model_versions("name='log-anomaly-detector'")
        assert len(versions) == 1
    finally:
        labels.write_bytes(original)  # the other tests run the whole pipeline
