"""`make bento`'s build, and `bentoml serve` of the built Bento outside the repository."""

from __future__ import annotations

import httpx
import pytest

from services.serve import start, stop, wait_ready
from tests.repo_copy import run_in
from tests.service.conftest import free_port

pytestmark = pytest.mark.service


def test_a_built_bento_serves_the_pinned_champion(services, repo, tmp_path) -> None:
    root, env = repo
    env = env | {"BENTOML_HOME": str(root / "bentoml"), "MONITORING_DIR": str(tmp_path / "logs")}
    built = run_in(root, env, "bentoml", "build", "--output", "tag",
                   "-f", "services/spam/bentofile.yaml", ".")  # fmt: skip
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("spam-classifier-service:")
    # served from its own copy of the code, far from the repository
    server = start("spam", "127.0.0.1", free_port(), tmp_path, env, tmp_path / "bento.log", tag)
    try:
        wait_ready([server], timeout=120)
        answer = httpx.post(f"{server.url}/classify", json={"texts": ["Call now to win!"]})
        assert answer.status_code == 200
        assert (
            answer.json()["model_version"]
            == services["spam"].post("/classify", {"texts": ["hi"]}).json()["model_version"]
        )
    finally:
        stop([server])
    assert list((tmp_path / "logs" / "spam" / "requests").glob("*.jsonl"))
