"""Fixtures shared by every kind of test."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from projects.core.cli import ENVIRONMENT_DEFAULTS
from projects.spam import config as spam_config
from projects.spam.data import RAW_FILE, read_messages
from tests.repo_copy import copy_repository

# Retraining moves @champion and adds model versions in the shared repository copy, which the
# pipeline and service tests count on: it runs last.
RUNS_LAST = "tests/e2e/test_retrain.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid.startswith(RUNS_LAST))  # stable: the rest keep order


@pytest.fixture(autouse=True, scope="session")
def _quiet_tools() -> None:
    """No telemetry from any tool during tests."""
    for name, value in ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(name, value)


@pytest.fixture(scope="session")
def spam_messages() -> pd.DataFrame:
    """The real SMS Spam Collection, as `make setup` writes it."""
    path = spam_config.RAW_DIR / RAW_FILE
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make setup` (make test does) first")
    return read_messages(path)


@pytest.fixture(scope="session")
def repo(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A copy of the repository with its raw data (see tests/repo_copy.py), and its environment."""
    copy = tmp_path_factory.mktemp("e2e") / "repo"
    return copy, copy_repository(copy)
