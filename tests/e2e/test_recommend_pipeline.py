"""`dvc repro` of the recommend pipeline in the temporary copy, real MLflow store."""

from __future__ import annotations

import json
import sys

import pytest

from tests.repo_copy import registry, run_in

pytestmark = pytest.mark.e2e

STAGES = ("prepare", "validate", "train", "evaluate", "promote")


def test_repro_of_recommend_registers_a_champion_and_runs_nothing_else(repo) -> None:
    root, env = repo
    done = run_in(root, env, "dvc", "repro", "--downstream", "recommend-prepare")
    assert "Running stage 'spam-" not in done.stdout
    metrics = json.loads((root / "metrics/recommend.json").read_text())
    names = {"precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10", "coverage_at_10"}
    assert set(metrics) == names | {"baseline"} and set(metrics["baseline"]) == names
    assert metrics["ndcg_at_10"] > 1.5 * metrics["baseline"]["ndcg_at_10"]
    client = registry(root)
    champion = client.get_model_version_by_alias("recommender", "champion")
    assert str(champion.version) == "1"
    run = client.get_run(champion.run_id)
    assert run.data.metrics["ndcg_at_10"] == pytest.approx(metrics["ndcg_at_10"])
    assert "baseline_ndcg_at_10" in run.data.metrics and "validation_ndcg_at_10" in run.data.metrics
    assert {"chosen.l2", "chosen.blend", "train.l2"} <= set(run.data.params)
    artifacts = {a.path for a in client.list_artifacts(champion.run_id, "plots")}
    assert {"plots/precision_at_k.png", "plots/long_tail.png"} <= artifacts


def test_the_champion_loads_as_a_pyfunc_and_answers(repo) -> None:
    root, env = repo
    script = """
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model("models:/recommender@champion")
print(model.predict(pd.DataFrame({"user_id": [1, 0], "k": [2, 2]})).to_json(orient="records"))
print(model.unwrap_python_model().similar_items(50, 1)[0].title)
"""
    tracking = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    done = run_in(root, env | tracking, sys.executable, "-c", script)
    rows, similar = done.stdout.strip().splitlines()[-2:]
    rows = json.loads(rows)
    assert [(r["user_id"], r["rank"], r["cold_start"]) for r in rows] == [
        (1, 1, False), (1, 2, False), (0, 1, True), (0, 2, True)
    ]  # fmt: skip
    assert rows[2]["title"] == "Star Wars (1977)" and similar


def test_params_of_one_project_never_touch_the_other(repo) -> None:
    root, env = repo
    params = root / "params.yaml"
    original = params.read_text()

    def stale() -> set[str]:
        return set(json.loads(run_in(root, env, "dvc", "status", "--json").stdout))

    before = stale()  # the spam stages, if they have not run in the copy yet
    assert not any(stage.startswith("recommend-") for stage in before)
    try:
        params.write_text(original.replace("C: 1.0", "C: 2.0"))
        assert not any(stage.startswith("recommend-") for stage in stale())
        params.write_text(original.replace("    metric: ndcg_at_10", "    metric: map_at_10"))
        assert stale() - before == {"recommend-promote"}
    finally:
        params.write_text(original)


def test_bad_ratings_stop_at_validate_and_change_nothing(repo) -> None:
    root, env = repo
    ratings = root / "data/raw/recommend/ml-100k.inter"
    original = ratings.read_bytes()
    recorded = (root / "data.dvc").read_text()
    try:
        lines = original.decode().splitlines()
        broken = [lines[0], lines[1].replace("\t3\t", "\t7\t", 1), *lines[1:]]  # and a duplicate
        ratings.write_text("\n".join(broken) + "\n")
        done = run_in(root, env, "dvc", "repro", "--downstream", "recommend-prepare", ok=False)
        assert done.returncode != 0
        output = done.stdout + done.stderr
        assert "recommend-validate" in output and "Traceback" not in output
        assert "rating: expect_column_values_to_be_in_set" in output
        assert "expect_compound_columns_to_be_unique" in output
        assert (root / "data.dvc").read_text() == recorded
        client = registry(root)
        assert str(client.get_model_version_by_alias("recommender", "champion").version) == "1"
        assert len(client.search_model_versions("name='recommender'")) == 1
    finally:
        ratings.write_bytes(original)  # the spam tests run the whole pipeline next
