"""A new champion without a restart: once `python -m services.pin` has pinned a newly promoted
version, the running service switches to it under steady load, with no failed request, and
every answer after the switch names the new version.

It runs in the shared repository copy, on the spam service the `services` fixture started. The
version it promotes is a copy of the champion (the same model files, a new registered version),
so nothing else the copy's tests check changes; the old champion is restored at the end.
"""

from __future__ import annotations

import sys
import threading
import time

import httpx
import pytest

from projects.core.project import get
from tests.repo_copy import registry, run_in

pytestmark = pytest.mark.service

PROJECT = "spam"
BODY = {"texts": ["See you at lunch?"]}
SWITCH_WITHIN = 15  # seconds from the pin to the first answer by the new version


class Load:
    """Requests one after another from a thread, keeping each answer's status and version."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[int, str | None]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stopped.is_set():
                try:
                    answer = client.post("/classify", json=BODY)
                    version = answer.json().get("model_version") if answer.is_success else None
                    self.answers.append((answer.status_code, version))
                except httpx.HTTPError as exc:
                    self.answers.append((0, type(exc).__name__))

    def until(self, version: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers and self.answers[-1][1] == version:
                return True
            time.sleep(0.05)
        return False


def _copy_version(client, root, name: str, version):
    """A new registered version of `version`'s model. MLflow resolves the model behind the
    source through its global tracking URI, not the client's: point it at the copy meanwhile."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    try:
        return client.create_model_version(name, version.source, run_id=version.run_id)
    finally:
        mlflow.set_tracking_uri(previous)


def _promote(root, env, name: str, version: str) -> None:
    registry(root).set_registered_model_alias(name, "champion", version)
    run_in(root, env, sys.executable, "-m", "services.pin")


def test_a_new_champion_is_served_without_a_restart_or_a_failed_request(services, repo) -> None:
    root, env = repo
    env = env | {"BENTOML_HOME": str(root / "bentoml")}
    name, client = get(PROJECT).model_name, registry(root)
    old = client.get_model_version_by_alias(name, "champion")
    new = _copy_version(client, root, name, old)
    old_version, new_version = str(old.version), str(new.version)  # answers carry strings
    service = services[PROJECT]
    load = Load(service.server.url)
    load.thread.start()
    try:
        _promote(root, env, name, new_version)
        assert load.until(new_version, SWITCH_WITHIN), load.answers[-5:]
        time.sleep(1)  # more answers after the switch
    finally:
        load.stopped.set()
        load.thread.join()
        _promote(root, env, name, old_version)  # the copy's other tests expect the old one
    statuses = {status for status, _ in load.answers}
    assert statuses == {200}, [a for a in load.answers if a[0] != 200][:5]
    versions = [version for _, version in load.answers]
    first_new = versions.index(new_version)
    assert set(versions[:first_new]) == {old_version}
    assert set(versions[first_new:]) == {new_version}, "an answer after the switch named the old"
    assert len(versions) - first_new > 5
    # and back, as the copy was
    back = service.post("/classify", BODY)
    deadline = time.monotonic() + SWITCH_WITHIN
    while back.json()["model_version"] != old_version and time.monotonic() < deadline:
        time.sleep(0.2)
        back = service.post("/classify", BODY)
    assert back.json()["model_version"] == old_version
