"""Team mode against the real thing: `python -m stack up` starts PostgreSQL, an MLflow server
with basic authentication and its artifacts in S3, Prometheus and the rest on free ports, in a
state folder of the test's own; the spam pipeline's train, evaluate and promote stages run
against it (on the shared repository copy's prepared data), and its champion is pinned and
served from it.

S3 is moto's standalone server (`moto_server`), as dvc-s3's own tests use: MinIO is not
available from any package registry here. Everything else is the real program."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.serve import start, stop, wait_ready
from stack.config import team_environment
from tests.repo_copy import run_in

pytestmark = pytest.mark.service

BUCKETS = {
    "STACK_ARTIFACTS": "s3://team-artifacts/mlflow",
    "STACK_DVC_REMOTE": "s3://team-data/dvc",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stack_ports() -> dict[str, str]:
    names = ("POSTGRES", "MLFLOW", "EXPORTER", "DASHBOARDS", "PROMETHEUS")
    return {f"STACK_{name}_PORT": str(_free_port()) for name in names}


@pytest.fixture(scope="module")
def s3() -> dict[str, str]:
    """moto's S3 server on a free port, with the stack's two buckets; the AWS settings that
    reach it."""
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    settings = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    }  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(settings["AWS_ENDPOINT_URL"], timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        client = _s3_client(settings)
        for url in BUCKETS.values():
            client.create_bucket(Bucket=url.split("/")[2])
        yield settings
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)


def _s3_client(settings: dict[str, str]):
    import boto3

    return boto3.client(
        "s3", endpoint_url=settings["AWS_ENDPOINT_URL"], region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(repo, s3, tmp_path_factory) -> dict[str, str]:
    """A running stack; the environment that points a command at it."""
    root, env = repo
    state = tmp_path_factory.mktemp("stack")
    # the spam service this module starts, on a port of its own, is one Prometheus scrapes;
    # one MLflow worker: the second only serves requests side by side, and takes 20 s to start
    env = env | s3 | BUCKETS | _stack_ports() | {
        "STACK_DIR": str(state), "SPAM_PORT": str(_free_port()), "STACK_MLFLOW_WORKERS": "1",
        "STACK_SCRAPE_INTERVAL": "2s",
        "MONITORING_DIR": str(state / "monitoring"),
    }  # fmt: skip
    try:
        run_in(root, env, sys.executable, "-m", "stack", "up")
        yield env | team_environment(state / "team.env")
    finally:
        run_in(root, env, sys.executable, "-m", "stack", "down", ok=False)


def test_a_second_up_says_the_stack_is_up(repo, stack) -> None:
    done = run_in(repo[0], stack, sys.executable, "-m", "stack", "up")
    assert "already up" in done.stdout


def test_the_server_wants_credentials_and_its_own_host_name(stack) -> None:
    uri = stack["MLFLOW_TRACKING_URI"]
    search = f"{uri}/api/2.0/mlflow/experiments/search"
    body = {"max_results": 1}
    user, password = stack["MLFLOW_TRACKING_USERNAME"], stack["MLFLOW_TRACKING_PASSWORD"]
    assert httpx.post(search, json=body).status_code == 401
    assert httpx.post(search, json=body, auth=(user, password + "x")).status_code == 401
    assert httpx.post(search, json=body, auth=(user, password)).status_code == 200
    port = uri.rsplit(":", 1)[1]
    foreign = {"Host": f"attacker.example:{port}"}  # DNS rebinding: refused by name
    assert httpx.post(search, json=body, auth=(user, password), headers=foreign).status_code == 403


def test_the_spam_pipeline_registers_promotes_and_serves_on_the_stack(
    repo, stack, tmp_path, monkeypatch
) -> None:
    root, _ = repo
    run_in(root, stack, "dvc", "repro", "spam-validate")  # prepared data, reused when there
    record, metrics = tmp_path / "model.json", tmp_path / "metrics.json"
    test_file = "data/prepared/spam/test.csv"
    for command in (
        ["projects.spam.train", "--train-file", "data/prepared/spam/train.csv", "--out", record],
        ["projects.spam.evaluate", "--model-record", record, "--test-file", test_file,
         "--metrics-file", metrics, "--plots-dir", tmp_path / "plots"],
        ["projects.spam.promote", "--model-record", record, "--metrics-file", metrics,
         "--test-file", test_file, "--report", tmp_path / "promotion.json"],
    ):  # fmt: skip
        run_in(root, stack, sys.executable, "-m", *map(str, command))
    version = json.loads(record.read_text())["version"]

    # another process (this one), as a teammate's machine would, sees the same registry and alias
    assert _server(stack, monkeypatch).get_model_version_by_alias(
        "spam-classifier", "champion").version == version  # fmt: skip
    # the model's files went through the server's proxy into the bucket
    stored = _s3_client(stack).list_objects_v2(Bucket="team-artifacts", Prefix="mlflow/")
    assert any(o["Key"].endswith("/MLmodel") for o in stored.get("Contents", []))

    # pinned from the server into the stack's own BentoML store, and served
    served = stack | {"SERVICES_PINNED_FILE": str(tmp_path / "pinned.json"),
                      "MONITORING_DIR": str(tmp_path / "monitoring")}  # fmt: skip
    run_in(root, served, sys.executable, "-m", "services.pin", "--project", "spam")
    pinned = json.loads((tmp_path / "pinned.json").read_text())["spam"]
    assert pinned["version"] == version
    assert Path(stack["BENTOML_HOME"], "models", "spam-classifier").is_dir()
    port = int(stack["SPAM_PORT"])
    server = start("spam", "127.0.0.1", port, root, served, tmp_path / "spam.log")
    try:
        wait_ready([server], timeout=120)
        answer = httpx.post(f"{server.url}/classify", json={"texts": ["WIN a prize now"]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == version
        # and the stack's Prometheus scrapes it (every 2 s here, 15 s by default)
        assert _until_up(stack, "spam", timeout=40), "Prometheus never saw the service up"
    finally:
        stop([server])


def _server(stack: dict[str, str], monkeypatch):
    """A client of the stack's server in this process, with the stack's credentials."""
    from mlflow import MlflowClient

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, stack[name])
    return MlflowClient(stack["MLFLOW_TRACKING_URI"], stack["MLFLOW_TRACKING_URI"])


def _prometheus(stack: dict[str, str], path: str, **params: str) -> dict:
    url = f"http://127.0.0.1:{stack['STACK_PROMETHEUS_PORT']}{path}"
    answer = httpx.get(url, params=params, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def _until_up(stack: dict[str, str], project: str, timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _prometheus(stack, "/api/v1/query", query=f'up{{project="{project}"}}')
        if [r["value"][1] for r in found["result"]] == ["1"]:
            return True
        time.sleep(1)
    return False


def test_prometheus_loads_the_alerting_rules(stack) -> None:
    groups = _prometheus(stack, "/api/v1/rules")["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"ServiceDown", "ServiceErrors", "ServiceSlow", "DataDrift"} <= alerts


def test_the_drift_exporter_and_the_evidently_ui_answer(stack) -> None:
    metrics = httpx.get(f"http://127.0.0.1:{stack['STACK_EXPORTER_PORT']}/metrics")
    assert metrics.status_code == 200 and "mlops_monitor_unreadable_files 0" in metrics.text
    assert httpx.get(f"http://127.0.0.1:{stack['STACK_DASHBOARDS_PORT']}/").status_code == 200


def test_stack_status_and_down(repo, stack) -> None:
    done = run_in(repo[0], stack, sys.executable, "-m", "stack", "status")
    for name in ("postgres", "mlflow", "exporter", "dashboards", "prometheus"):
        assert re.search(rf"^{name} +up ", done.stdout, flags=re.M), done.stdout


def test_a_missing_bucket_is_named_before_anything_starts(repo, stack, tmp_path) -> None:
    env = stack | _stack_ports() | {"STACK_DIR": str(tmp_path / "other"),
                                    "STACK_ARTIFACTS": "s3://no-such-bucket/mlflow"}  # fmt: skip
    done = run_in(repo[0], env, sys.executable, "-m", "stack", "up", ok=False)
    assert done.returncode == 1
    assert "there is no bucket 'no-such-bucket'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "other" / "run").exists()  # nothing was started


def _hashes(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}  # fmt: skip


def test_the_data_version_goes_to_the_s3_remote_and_into_a_fresh_clone(
    repo, stack, tmp_path
) -> None:
    root, _ = repo
    done = run_in(root, stack, sys.executable, "-m", "stack", "import", "--no-models")
    assert "data: s3://team-data/dvc" in done.stdout
    clone = tmp_path / "clone"
    run_in(tmp_path, stack, "git", "clone", "-q", str(root), str(clone))
    pulled = run_in(clone, stack, sys.executable, "-m", "projects.core.bootstrap")
    assert "pulled from the DVC remote" in pulled.stderr + pulled.stdout
    assert _hashes(clone / "data" / "raw") == _hashes(root / "data" / "raw")
    status = run_in(clone, stack, "dvc", "status", "--cloud", "--remote", "team", "data.dvc")
    assert "in sync" in status.stdout


def _laptop_store(uri: str) -> None:
    """Two runs, each with a registered version of `laptop-model`; the second is champion."""
    import mlflow
    from sklearn.dummy import DummyClassifier

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("laptop-work")
        for strategy in ("most_frequent", "prior"):
            with mlflow.start_run(experiment_id=experiment):
                mlflow.log_param("strategy", strategy)
                mlflow.log_metric("f1", 0.5)
                mlflow.log_text("notes", "notes.txt")
                model = DummyClassifier(strategy=strategy).fit([[0], [1]], [0, 1])
                mlflow.sklearn.log_model(model, name="model", registered_model_name="laptop-model")
        mlflow.MlflowClient().set_registered_model_alias("laptop-model", "champion", 2)
    finally:
        mlflow.set_tracking_uri(previous)


def test_import_copies_the_laptops_models_runs_and_aliases_once(
    repo, stack, tmp_path, monkeypatch
) -> None:
    import mlflow

    laptop = f"sqlite:///{tmp_path / 'laptop.db'}"
    monkeypatch.chdir(tmp_path)  # the store's artifacts beside it
    _laptop_store(laptop)
    command = [sys.executable, "-m", "stack", "import", "--no-data", "--source", laptop]
    done = run_in(repo[0], stack, *command)
    assert "2 runs and 2 model versions copied" in done.stdout
    assert "laptop-model@champion -> v2" in done.stdout

    # as a teammate sees it: the server's copy, with its run, loaded through the server
    server = _server(stack, monkeypatch)
    version = server.get_model_version_by_alias("laptop-model", "champion")
    run = server.get_run(version.run_id)
    assert (version.version, run.data.params, run.data.metrics) == ("2", {"strategy": "prior"},
                                                                   {"f1": 0.5})  # fmt: skip
    assert [a.path for a in server.list_artifacts(run.info.run_id)] == ["notes.txt"]
    local = mlflow.artifacts.download_artifacts(
        f"{server.get_model_version_download_uri('laptop-model', '2')}/MLmodel",
        dst_path=str(tmp_path / "downloaded"), tracking_uri=stack["MLFLOW_TRACKING_URI"],
    )  # fmt: skip
    assert "sklearn" in Path(local).read_text()

    again = run_in(repo[0], stack, *command)
    assert "0 runs and 0 model versions copied" in again.stdout
