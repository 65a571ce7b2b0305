"""MLflow tracking: one store inside the repository, experiments per project, run lineage."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from projects.core import paths

TRACKING_DB = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the sqlite store at the repository root.

    The default path is absolute and belongs to the main repository even inside a
    `dvc exp run --temp` copy, so no run is lost when DVC removes the copy.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{paths.main_root() / TRACKING_DB}"


def artifact_root(uri: str) -> str | None:
    """Where a sqlite store keeps artifacts: `mlartifacts/` beside the database file."""
    if not uri.startswith("sqlite:///"):
        return None  # a tracking server decides for itself
    return (Path(uri.removeprefix("sqlite:///")).parent / ARTIFACTS_DIR).as_uri()


def start(experiment: str) -> str:
    """Point MLflow at the store and select `experiment` (created if new); return its id."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        root = artifact_root(uri)
        location = f"{root}/{experiment}" if root else None
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def _git(*args: str) -> str | None:
    """Output of a git command in the repository, or None where git cannot answer."""
    try:
        done = subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def data_version(dvc_file: Path = paths.DATA_DVC_FILE) -> str:
    """The md5 that `data.dvc` records for the raw data: the data version a run used."""
    try:
        with dvc_file.open() as f:
            return str(yaml.safe_load(f)["outs"][0]["md5"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return "unknown"


def lineage() -> dict[str, str]:
    """Tags that tie a run to its code, data and experiment."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    tags = {
        "git_commit": _git("rev-parse", "HEAD") or "unknown",
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
        "data_version": data_version(),
    }
    if name := os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = name
    return tags


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"train": {"C": 1}}` -> `{"train.C": 1}`, for logging nested params."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
