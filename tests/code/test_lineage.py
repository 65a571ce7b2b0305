"""`make lineage`: monitoring.lineage on a throwaway MLflow store and a fake request log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from monitoring.lineage import (
    Source,
    UnknownPredictionError,
    bento_facts,
    bentos_with,
    connect,
    find_record,
    parse_id,
    render,
    trace,
)
from projects.core import paths, tracking
from projects.core.cli import StageError
from projects.core.project import discover

# any served project will do; the test names none
SERVED = next(project for project in discover() if project.has_service())
MODEL = SERVED.model_name
REQUEST = "0123456789abcdef0123456789abcdef"
OTHER_REQUEST = "fedcba9876543210fedcba9876543210"
PARAMS = {"prepare": {"seed": 0}, "train": {"C": 1.5}}
METRICS = {"f1": 0.9, "accuracy": 0.95}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> SimpleNamespace:
    """A sqlite store with a training run as `tracking.training_run` logs one, and `MODEL` v1
    (its @champion) and v2 (deleted) from that run, and v3 from a run deleted since."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput, InputTag

    directory = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment(SERVED.name, (directory / "artifacts").as_uri())
    run = client.create_run(experiment, tags={**tracking.lineage(), "project": SERVED.name})
    for key, value in tracking.flatten(PARAMS).items():
        client.log_param(run.info.run_id, key, value)
    for key, value in METRICS.items():
        client.log_metric(run.info.run_id, key, value)
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})
    with warnings.catch_warnings():  # as training_run: MLflow's own ambiguity about the source
        warnings.filterwarnings("ignore", message="The specified dataset source")
        dataset = mlflow.data.from_pandas(frame, "data/train.csv", name=f"{SERVED.name}-train")
    training = InputTag("mlflow.data.context", "training")
    client.log_inputs(run.info.run_id, [DatasetInput(dataset._to_mlflow_entity(), [training])])
    client.set_terminated(run.info.run_id)
    client.create_registered_model(MODEL)
    for _ in range(2):
        client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(MODEL, "champion", "1")
    client.set_model_version_tag(MODEL, "1", "promotion", "first model: it becomes champion")
    client.delete_model_version(MODEL, "2")
    deleted = client.create_run(experiment).info.run_id  # v3's run, deleted since
    client.create_model_version(MODEL, f"runs:/{deleted}/model", deleted)
    client.delete_run(deleted)
    return SimpleNamespace(uri=uri, client=client, run_id=run.info.run_id, digest=dataset.digest)


def record(request: str, index: int, version: str | None = "1", **extra: Any) -> dict[str, Any]:
    found = {
        "timestamp": "2026-11-21T10:00:00.000+00:00",
        "request_id": request,
        "prediction_id": f"{request}-{index}",
        "route": "predict",
        "latency_ms": 1.0,
        "model_version": version,
    }
    return found | extra


def write_log(path: Path, lines: list[dict[str, Any] | str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        line if isinstance(line, str) else json.dumps(line, separators=(",", ":")) for line in lines
    )
    path.write_text("".join(f"{line}\n" for line in text))


@pytest.fixture
def logs(tmp_path) -> list[Source]:
    """Two days of one project's request log, and another project with none."""
    requests = tmp_path / "monitoring" / SERVED.name / "requests"
    write_log(requests / "2026-11-20.jsonl", [
        record(OTHER_REQUEST, 0),
        record(REQUEST, 1),  # the one asked for below
        record(REQUEST, 2, version="2"),
        record(REQUEST, 3, version=None),
        record(REQUEST, 4, model="some-other-model"),
        record(REQUEST, 5, version="3"),
    ])  # fmt: skip
    write_log(requests / "2026-11-21.jsonl", [
        record(REQUEST, 10),  # its id starts with the id asked for
        f'{{"prediction_id":"{REQUEST}-1","route":"predict","mod',  # cut short by a crash
        "not json, but it names " + f"{REQUEST}-1",
    ])  # fmt: skip
    empty = tmp_path / "monitoring" / "another" / "requests"
    return [Source(SERVED.name, requests, MODEL), Source("another", empty, "another-model")]


def no_bento(tag: str) -> dict[str, Any]:
    store = "/nowhere/bentoml"
    return {"store": store, "model_tag": tag, "in_store": False, "created": None, "run_id": None,
            "bentos": []}  # fmt: skip


def pinned_bento(run_id: str | None):
    def facts(tag: str) -> dict[str, Any]:
        return no_bento(tag) | {"in_store": True, "run_id": run_id, "bentos": ["svc:abc"]}

    return facts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{REQUEST}-0", f"{REQUEST}-0"),
        (f" {REQUEST.upper()}-12\n", f"{REQUEST}-12"),  # pasted: spaces, capitals
    ],
)
def test_a_prediction_id_is_32_hex_digits_a_dash_and_an_index(text, expected) -> None:
    assert parse_id(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "nope", REQUEST, f"{REQUEST}-", f"{REQUEST}-x", f"{REQUEST[1:]}-0", f"{REQUEST}0-0",
     f"{'g' * 32}-0", f"{REQUEST}-0-1", f"-{REQUEST}-0"],
)  # fmt: skip
def test_a_malformed_id_is_refused_naming_the_shape(text) -> None:
    with pytest.raises(StageError, match=r"not a prediction id: .*<32 hex digits>-<index>"):
        parse_id(text)


def test_the_record_is_found_newest_file_first_and_by_its_exact_id(logs) -> None:
    found = find_record(f"{REQUEST}-1", logs)
    # not `-10` of the newer file, nor its broken lines that contain the id
    assert (found.path.name, found.line) == ("2026-11-20.jsonl", 2)
    assert found.record == record(REQUEST, 1) and found.project == SERVED.name
    assert find_record(f"{REQUEST}-10", logs).path.name == "2026-11-21.jsonl"


def test_an_unknown_id_says_what_was_searched(logs, tmp_path) -> None:
    with pytest.raises(UnknownPredictionError) as caught:
        find_record(f"{REQUEST}-99", logs)
    message = str(caught.value)
    assert f"unknown prediction {REQUEST}-99" in message
    assert "2 request-log file(s), dated 2026-11-20 to 2026-11-21" in message
    assert f"{SERVED.name} (2), another (0) under {tmp_path / 'monitoring'}" in message
    nowhere = [Source(SERVED.name, tmp_path / "nothing" / "requests", MODEL)]
    with pytest.raises(UnknownPredictionError, match=f"no request log of {SERVED.name} under"):
        find_record(f"{REQUEST}-99", nowhere)


def test_the_chain_runs_from_the_record_to_the_run_and_the_bento(logs, store) -> None:
    lineage = trace(f"{REQUEST}-1", logs, lambda: store.client, pinned_bento(None))
    assert lineage["missing"] == []
    assert lineage["model"] == {"name": MODEL, "version": "1"}
    assert lineage["model_version"]["run_id"] == store.run_id
    assert lineage["model_version"]["aliases"] == ["champion"]
    assert lineage["model_version"]["tags"] == {"promotion": "first model: it becomes champion"}
    assert lineage["bento"]["model_tag"] == f"{MODEL}:v1" and lineage["bento"]["bentos"]
    run = lineage["run"]
    assert run["id"] == store.run_id and run["status"] == "FINISHED"
    assert run["git_commit"] == tracking.lineage()["git_commit"]
    assert run["data_version"] == tracking.data_version()
    assert run["params"] == {"prepare.seed": "0", "train.C": "1.5"}
    assert run["metrics"] == METRICS
    assert run["datasets"] == [{"name": f"{SERVED.name}-train", "digest": store.digest,
                                "context": "training", "source": "data/train.csv"}]  # fmt: skip
    assert json.loads(json.dumps(lineage)) == lineage  # `--json` prints it as it is
    text = render(lineage)
    for line in (
        f"prediction {REQUEST}-1",
        f"  model: {MODEL} v1",
        "    aliases: champion",
        f"    BentoML model: {MODEL}:v1 (in /nowhere/bentoml)",
        "      Bento: svc:abc",
        f"    MLflow run: {store.run_id} ({run['name']})",
        f"      git commit: {run['git_commit']}",
        f"      data version (data.dvc md5): {run['data_version']}",
        f"      training dataset: {SERVED.name}-train, digest {store.digest}, from data/train.csv",
        "        train.C: 1.5",
        "        f1: 0.9",
    ):
        assert line in text.splitlines(), f"{line!r} not in\n{text}"


def test_a_deleted_version_prints_what_is_known_and_names_what_is_missing(logs, store) -> None:
    lineage = trace(f"{REQUEST}-2", logs, lambda: store.client, no_bento)
    assert lineage["model"] == {"name": MODEL, "version": "2"}
    assert lineage["request"]["line"] == 3
    assert lineage["model_version"] is None and lineage["run"] is None
    assert lineage["missing"] == [
        f"{MODEL} v2 is not in the MLflow registry (deleted?)",
        f"no BentoML model {MODEL}:v2 in /nowhere/bentoml",
        "the training run is unknown: no registry version or pinned model names it",
    ]
    assert "  missing: the training run is unknown" in render(lineage)


def test_a_deleted_version_pinned_as_a_bento_model_still_leads_to_its_run(logs, store) -> None:
    lineage = trace(f"{REQUEST}-2", logs, lambda: store.client, pinned_bento(store.run_id))
    assert lineage["model_version"] is None and lineage["run"]["id"] == store.run_id
    assert lineage["missing"] == [f"{MODEL} v2 is not in the MLflow registry (deleted?)"]
    assert "found via: the pinned BentoML model's MLmodel" in render(lineage)


def test_a_deleted_run_that_the_store_still_keeps_is_shown_as_deleted(logs, store) -> None:
    lineage = trace(f"{REQUEST}-5", logs, lambda: store.client, no_bento)
    assert lineage["run"]["lifecycle_stage"] == "deleted"
    assert "      status: RUNNING (deleted)" in render(lineage).splitlines()


def test_a_record_names_its_model_else_the_project_does(logs, store) -> None:
    lineage = trace(f"{REQUEST}-4", logs, lambda: store.client, no_bento)
    assert lineage["model"] == {"name": "some-other-model", "version": "1"}
    assert "some-other-model v1 is not in the MLflow registry (deleted?)" in lineage["missing"]


def test_a_record_without_a_version_or_a_store_says_so(logs, store) -> None:
    lineage = trace(f"{REQUEST}-3", logs, lambda: pytest.fail("no store needed"), no_bento)
    assert lineage["missing"] == ["the record names no model_version: nothing more to trace"]
    assert "  model: " + MODEL + " v?" in render(lineage)
    lineage = trace(f"{REQUEST}-1", logs, lambda: None, no_bento)
    assert lineage["missing"][0].startswith("no MLflow store at ")
    assert lineage["run"] is None and lineage["bento"]["model_tag"] == f"{MODEL}:v1"


def test_no_store_is_created_where_there_is_none(tmp_path) -> None:
    assert connect(f"sqlite:///{tmp_path / 'mlflow.db'}") is None
    assert bento_facts(f"{MODEL}:v1", tmp_path / "bentoml")["in_store"] is False
    assert list(tmp_path.iterdir()) == []


def test_bentos_are_matched_on_the_models_they_contain() -> None:
    def bento(tag: str, *models: str) -> SimpleNamespace:
        contained = [SimpleNamespace(tag=model) for model in models]
        return SimpleNamespace(tag=tag, info=SimpleNamespace(all_models=contained))

    built = [bento("svc:2", "m:v1"), bento("svc:1", "m:v1", "n:v3"), bento("svc:3", "m:v10")]
    assert bentos_with("m:v1", built) == ["svc:1", "svc:2"]
    assert bentos_with("m:v2", built) == []


@pytest.mark.parametrize(
    ("argument", "message"),
    [("not-an-id", "error: not a prediction id: 'not-an-id'"),
     (f"{REQUEST}-99", f"error: unknown prediction {REQUEST}-99: not in any of the 2")],
)  # fmt: skip
def test_the_command_answers_bad_and_unknown_ids_in_one_line(logs, argument, message) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "monitoring.lineage", "--json", "--", argument],
        cwd=paths.ROOT,
        env={**os.environ, "MONITORING_DIR": str(logs[0].requests_dir.parents[1])},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(message) and len(done.stderr.splitlines()) == 1, done.stderr
