"""`make lineage` on a prediction a running service made: from its request-log record to the
registered version, the run, its git commit and data version, and the pinned BentoML model.

Everything runs in the shared repository copy, whose services the `services` fixture started.
"""

from __future__ import annotations

import json
import sys
import uuid

import pytest
import yaml

from projects.core import tracking
from projects.core.project import get
from tests.repo_copy import registry, run_in

pytestmark = pytest.mark.service

PROJECT = "spam"


def test_a_served_prediction_leads_to_its_version_run_commit_and_data(services, repo) -> None:
    root, env = repo
    service = services[PROJECT]
    env = env | {
        "BENTOML_HOME": str(root / "bentoml"),
        "MONITORING_DIR": str(service.requests_dir.parents[1]),
    }
    before = service.settled()
    text = f"Is the lineage of this message known? {uuid.uuid4().hex}"
    answer = service.post("/classify", {"texts": [text]}).json()
    prediction, version = answer["results"][0]["prediction_id"], answer["model_version"]
    assert [r["text"] for r in service.records_after(before, expected=1)] == [text]

    command = (sys.executable, "-m", "monitoring.lineage")
    lineage = json.loads(run_in(root, env, *command, "--json", prediction).stdout)

    model = get(PROJECT).model_name
    registered = registry(root).get_model_version(model, version)
    run = registry(root).get_run(registered.run_id)
    commit = run_in(root, env, "git", "rev-parse", "HEAD").stdout.strip()
    data_version = tracking.data_version(root / "data.dvc")
    assert lineage["missing"] == []
    assert lineage["prediction_id"] == prediction and lineage["request"]["record"]["text"] == text
    assert lineage["request"]["project"] == PROJECT
    assert lineage["model"] == {"name": model, "version": version}
    assert lineage["model_version"]["run_id"] == registered.run_id
    assert "champion" in lineage["model_version"]["aliases"]
    assert lineage["run"]["id"] == registered.run_id
    assert lineage["run"]["git_commit"] == run.data.tags["git_commit"] == commit
    assert lineage["run"]["data_version"] == run.data.tags["data_version"] == data_version
    (dataset,) = run.inputs.dataset_inputs
    assert lineage["run"]["datasets"][0]["digest"] == dataset.dataset.digest
    assert lineage["run"]["params"] == run.data.params
    pinned = json.loads((root / "services" / "pinned.json").read_text())[PROJECT]
    assert lineage["bento"]["model_tag"] == pinned["tag"] and lineage["bento"]["in_store"]
    assert lineage["bento"]["run_id"] == registered.run_id
    # every Bento built of this service in the session (tests/service/test_bento.py) holds it
    bentofile = yaml.safe_load((root / "services" / PROJECT / "bentofile.yaml").read_text())
    listed = json.loads(run_in(root, env, "bentoml", "list", "--output", "json").stdout)
    ours = {b["tag"] for b in listed if b["tag"].startswith(f"{bentofile['name']}:")}
    assert ours <= set(lineage["bento"]["bentos"])

    human = run_in(root, env, *command, prediction).stdout.splitlines()
    for line in (
        f"prediction {prediction}",
        f"  model: {model} v{version}",
        f"    BentoML model: {pinned['tag']} (in {root / 'bentoml'})",
        f"      git commit: {commit}",
        f"      data version (data.dvc md5): {data_version}",
    ):
        assert line in human, "\n".join(human)
    assert any(line.startswith(f"    MLflow run: {registered.run_id}") for line in human)
