"""A temporary copy of the repository that the end-to-end and service tests share.

The copy is made once per session (the `repo` fixture in tests/conftest.py): every project's
pipeline runs in it, so the spam tests do not pay for the recommend stages again, and the service
tests serve its champions. A test that breaks the copy's data restores it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from projects.core import paths
from projects.core.cli import ENVIRONMENT_DEFAULTS

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "e2e",
    "GIT_AUTHOR_EMAIL": "e2e@localhost",
    "GIT_COMMITTER_NAME": "e2e",
    "GIT_COMMITTER_EMAIL": "e2e@localhost",
}


def run_in(repo: Path, env: dict[str, str], *command: str, ok: bool = True):
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    if ok and done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def copy_repository(copy: Path) -> dict[str, str]:
    """Copy the repository's files and raw data to `copy`, as its own git repository and DVC
    cache; return the environment to run commands in it."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=paths.ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = paths.ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    shutil.copytree(paths.RAW_DIR, copy / "data" / "raw")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "DVC_"))}
    env |= ENVIRONMENT_DEFAULTS | GIT_IDENTITY
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_SITE_CACHE_DIR"] = str(copy.parent / "dvc-site-cache")
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "copy"],
        ["dvc", "commit", "-f", "-q", "data.dvc"],  # fill this copy's own cache
    ):
        run_in(copy, env, *command)
    return env


def registry(repo: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
