"""Each service keeps the contract its own OpenAPI document states, as schemathesis checks it:
every operation, every check, a bounded number of generated requests, no failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from projects.core import paths

pytestmark = pytest.mark.service

CONFIG = paths.ROOT / "schemathesis.toml"
# per operation; a fixed seed, so that a failure is the same on every run and on CI
EXAMPLES = 15
SEED = 0


def schemathesis(url: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [
        Path(sys.executable).with_name("schemathesis"), "--config-file", CONFIG, "run",
        f"{url}/docs.json", "--checks", "all", "--max-examples", str(EXAMPLES), "--seed", str(SEED),
        "--workers", "1", "--no-color", "--output-truncate", "true",
    ]  # fmt: skip
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("project", ["spam", "recommend", "anomaly", "traffic"])
def test_every_operation_keeps_its_documented_contract(services, project, tmp_path) -> None:
    done = schemathesis(services[project].server.url, tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


@pytest.mark.parametrize("project", ["spam", "recommend", "anomaly", "traffic"])
def test_unknown_paths_and_methods_get_the_error_shape(services, project) -> None:
    client = services[project].client
    missing = client.get("/no/such/route")
    assert missing.status_code == 404 and "/docs.json" in missing.json()["error"]
    for path in ("/readyz", "/livez", "/metrics", "/healthz"):
        answer = client.put(path, json={})
        assert answer.status_code == 405, path
        assert answer.headers["allow"] == "GET, HEAD" and "PUT" in answer.json()["error"]
    spec = client.get("/docs.json").json()
    route = next(p for p, item in spec["paths"].items() if "post" in item)
    answer = client.get(route)
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"
    responses = spec["paths"][route]["post"]["responses"]
    assert {"200", "400", "413", "415", "503", "504"} <= set(responses)
    assert responses["503"]["headers"]["Retry-After"]["required"] is True
