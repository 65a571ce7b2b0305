"""Monitoring end to end: simulated traffic to the running services, `monitoring.monitor` on
the request logs, bad input, and the dashboards in a real headless browser.

Everything runs in the shared repository copy, whose services the `services` fixture started;
their request logs, the feedback and the workspace are in the fixture's MONITORING_DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from projects.core import paths
from projects.core.project import discover
from tests.repo_copy import run_in
from tests.service.conftest import free_port

pytestmark = pytest.mark.service

PROJECTS = tuple(project.name for project in discover())
REQUESTS = "600"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", paths.ROOT / "test-artifacts"))


@pytest.fixture(scope="module")
def monitoring(repo, services) -> tuple[Path, dict[str, str], list[str]]:
    """The copy, its environment pointing at the services' monitoring dir, and the ports."""
    root, env = repo
    directory = services["spam"].requests_dir.parents[1]
    env = env | {"MONITORING_DIR": str(directory)}
    ports = [a for p, s in services.items() for a in ("--port", f"{p}={s.server.port}")]
    monitor(root, env)  # close the window of the other service tests' requests
    return root, env, ports


def simulate(root: Path, env: dict[str, str], ports: list[str], *args: str) -> None:
    run_in(root, env, sys.executable, "-m", "monitoring.simulate", "--requests", REQUESTS,
           *ports, *args)  # fmt: skip


def monitor(root: Path, env: dict[str, str], *args: str) -> tuple[dict[str, str], int, str]:
    """The verdicts (the last line), the exit status and everything printed."""
    done = run_in(root, env, sys.executable, "-m", "monitoring.monitor", *args, ok=False)
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    return json.loads(done.stdout.strip().splitlines()[-1]), done.returncode, output


def test_traffic_without_drift_is_judged_no_drift(monitoring) -> None:
    root, env, ports = monitoring
    simulate(root, env, ports, "--seed", "1")
    verdicts, status, output = monitor(root, env)
    assert (verdicts, status) == (dict.fromkeys(PROJECTS, "no_drift"), 0), output
    directory = Path(env["MONITORING_DIR"])
    for project in PROJECTS:
        reports = sorted((directory / project / "reports").iterdir())
        assert {p.suffix for p in reports} == {".html", ".json"}
        latest = json.loads((directory / project / "latest.json").read_text())
        assert latest["verdict"] == "no_drift" and latest["requests"] == int(REQUESTS)


def test_drifted_traffic_is_judged_drift_in_every_project(monitoring) -> None:
    root, env, ports = monitoring
    simulate(root, env, ports, "--drift", "--seed", "2")
    verdicts, status, output = monitor(root, env)
    assert (verdicts, status) == (dict.fromkeys(PROJECTS, "drift"), 0), output
    assert "make retrain PROJECT=spam" in output and "make retrain PROJECT=anomaly" in output
    assert "predictions drifted" in output
    report = json.loads(sorted((Path(env["MONITORING_DIR"]) / "spam/reports").glob("*.json"))[-1]
                        .read_text())  # fmt: skip
    measured = {m["config"]["type"].rsplit(":", 1)[-1] for m in report["metrics"]}
    assert {"DriftedColumnsCount", "ValueDrift", "FeedbackQuality", "WindowRequests"} <= measured


def test_every_window_is_a_snapshot_in_the_workspace(monitoring) -> None:
    from monitoring.dashboards import open_workspace

    _, env, _ = monitoring
    workspace = open_workspace(Path(env["MONITORING_DIR"]) / "workspace")
    projects = workspace.list_projects()
    assert sorted(p.name for p in projects) == sorted(PROJECTS)
    for project in projects:
        # a window without drift, then one with it (and spam's and anomaly's first window,
        # closed by the fixture, of the other service tests' requests)
        assert len(workspace.list_runs(project.id)) >= 2


def test_an_empty_window_is_its_own_status(monitoring) -> None:
    root, env, _ = monitoring
    verdicts, status, output = monitor(root, env)
    assert (verdicts, status) == (dict.fromkeys(PROJECTS, "empty_window"), 3)
    assert "no new classify requests" in output


def test_bad_lines_stop_the_window_and_the_log_is_kept_as_it_is(monitoring, tmp_path) -> None:
    root, env, ports = monitoring
    simulate(root, env, ports, "--projects", "spam", "--seed", "3")
    # a copy of the spam state, so that the service tests still read a clean log
    shutil.copytree(Path(env["MONITORING_DIR"]) / "spam", tmp_path / "spam")
    env = env | {"MONITORING_DIR": str(tmp_path)}
    (log,) = (tmp_path / "spam/requests").glob("*.jsonl")
    with log.open("a") as f:
        f.write('{"timestamp": "2026-11-21T10:00:00", "route": "classify", "text": "cut\n')
        f.write("not json at all\n")
    before = log.read_bytes()
    verdicts, status, output = monitor(root, env, "--project", "spam")
    assert (verdicts, status) == ({"spam": "corrupt_log"}, 4)
    assert f"{log.name}:" in output and "truncated" in output and "not a JSON object" in output
    assert log.read_bytes() == before
    verdicts, status, output = monitor(root, env, "--project", "spam", "--skip-bad-lines")
    assert (verdicts, status) == ({"spam": "no_drift"}, 0), output
    assert "2 bad log line(s) skipped" in output
    assert log.read_bytes() == before


def write_records(directory: Path, records: list[dict]) -> None:
    (directory / "spam/requests").mkdir(parents=True)
    text = "".join(json.dumps(r) + "\n" for r in records)
    (directory / "spam/requests/2026-11-21.jsonl").write_text(text)


RECORD = {
    "timestamp": "2026-11-21T10:00:00+00:00",
    "route": "classify",
    "prediction_id": "a-0",
    "text": "Are we still on for lunch?",
    "label": "ham",
    "spam_probability": 0.01,
}


@pytest.mark.parametrize(
    ("records", "verdict", "status", "message"),
    [
        ([{k: v for k, v in RECORD.items() if k != "text"}] * 3, "missing_column", 5,
         "no 'text' field"),
        ([RECORD | {"spam_probability": None}] * 3, "null_column", 6,
         "'spam_probability' is null in all 3 records"),
    ],
)  # fmt: skip
def test_missing_and_all_null_fields_have_their_own_status(
    monitoring, tmp_path, records, verdict, status, message
) -> None:
    root, env, _ = monitoring
    write_records(tmp_path, records)
    env = env | {"MONITORING_DIR": str(tmp_path)}
    verdicts, code, output = monitor(root, env, "--project", "spam")
    assert (verdicts, code) == ({"spam": verdict}, status)
    assert message in output


def test_a_reference_of_another_schema_is_refused(monitoring, tmp_path) -> None:
    root, env, _ = monitoring
    write_records(tmp_path, [RECORD] * 3)
    frame = root / "data/reference/spam/reference.csv"
    original = frame.read_bytes()
    try:
        lines = original.decode().splitlines()
        frame.write_text("\n".join(",".join(line.split(",")[1:]) for line in lines) + "\n")
        env = env | {"MONITORING_DIR": str(tmp_path)}
        verdicts, status, output = monitor(root, env, "--project", "spam")
    finally:
        frame.write_bytes(original)
    assert (verdicts, status) == ({"spam": "reference_mismatch"}, 7)
    assert "does not match the current schema" in output and "text_length" in output


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is missing: `make test` installs it (make chromium)")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1400,1800", "--virtual-time-budget=20000",
    ]  # fmt: skip
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)


def test_the_dashboards_render_panels_with_data(monitoring, tmp_path) -> None:
    root, env, _ = monitoring
    port = free_port()
    log = (tmp_path / "ui.log").open("w")
    ui = subprocess.Popen(
        [sys.executable, "-m", "monitoring.dashboards", "--port", str(port)],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        projects = wait_for_projects(f"http://127.0.0.1:{port}", ui)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for project in projects:
            url = f"http://127.0.0.1:{port}/projects/{project['id']}"
            dom = chromium(f"--user-data-dir={tmp_path / 'dom'}", "--dump-dom", url).stdout
            for title in ("Share of drifted columns", "Request volume"):
                assert title in dom, f"{project['name']}: no '{title}' panel"
            # a panel with data draws its points as circles in an svg; an empty one draws none
            assert dom.count("<circle") >= 4, f"{project['name']}: panels without data"
            shot = ARTIFACTS / f"dashboard-{project['name']}.png"
            chromium(f"--user-data-dir={tmp_path / 'shot'}", f"--screenshot={shot}", url)
            assert shot.stat().st_size > 10_000
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
        log.close()


def wait_for_projects(url: str, ui: subprocess.Popen, timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ui.poll() is not None:
            pytest.fail("evidently ui exited")
        try:
            projects = httpx.get(f"{url}/api/projects", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            time.sleep(1)
            continue
        assert sorted(p["name"] for p in projects) == sorted(PROJECTS)
        return projects
    pytest.fail("evidently ui did not answer")
