"""Team mode against the real thing: `python -m stack up` starts PostgreSQL and an MLflow server
with basic authentication on free ports, in a state folder of the test's own; the spam pipeline's
train, evaluate and promote stages run against it (on the shared repository copy's prepared
data), and its champion is pinned and served from it."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import httpx
import pytest

from services.serve import start, stop, wait_ready
from tests.repo_copy import run_in

pytestmark = pytest.mark.service


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _team_env(state: Path) -> dict[str, str]:
    """What `.stack/team.env` says, as `STACK=team make` exports it."""
    pairs = (line.split("=", 1) for line in (state / "team.env").read_text().splitlines())
    return dict(pair for pair in pairs if len(pair) == 2)


@pytest.fixture(scope="module")
def stack(repo, tmp_path_factory) -> dict[str, str]:
    """A running stack; the environment that points a command at it."""
    root, env = repo
    state = tmp_path_factory.mktemp("stack")
    names = ("POSTGRES", "MLFLOW", "EXPORTER", "DASHBOARDS", "PROMETHEUS")
    ports = {f"STACK_{name}_PORT": str(_free_port()) for name in names}
    # the spam service this module starts, on a port of its own, is one Prometheus scrapes
    env = env | ports | {"STACK_DIR": str(state), "SPAM_PORT": str(_free_port()),
                         "MONITORING_DIR": str(state / "monitoring")}  # fmt: skip
    try:
        run_in(root, env, sys.executable, "-m", "stack", "up")
        yield env | _team_env(state)
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
    repo, stack, tmp_path
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

    # another process, as a teammate's machine would, sees the same registry and alias
    look = (
        "import mlflow; c = mlflow.MlflowClient(); "
        "print(c.get_model_version_by_alias('spam-classifier', 'champion').version)"
    )
    assert run_in(root, stack, sys.executable, "-c", look).stdout.strip() == version
    without = {k: v for k, v in stack.items() if k != "MLFLOW_TRACKING_PASSWORD"}
    refused = run_in(root, without, sys.executable, "-c", look, ok=False)
    assert refused.returncode != 0 and "401" in refused.stderr + refused.stdout

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
        # and the stack's Prometheus scrapes it (every 15 s)
        assert _until_up(stack, "spam", timeout=40), "Prometheus never saw the service up"
    finally:
        stop([server])


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
