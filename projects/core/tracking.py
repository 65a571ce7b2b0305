"""MLflow tracking: one store inside the repository, experiments per project, run lineage."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from projects.core import paths, recovery

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


def flatten(params: Mapping[str, Any], prefix: str = "", separator: str = ".") -> dict[str, Any]:
    """`{"train": {"C": 1}}` -> `{"train.C": 1}`, for logging nested params or metrics."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}{separator}", separator))
        else:
            flat[name] = value
    return flat


@contextlib.contextmanager
def training_run(project: str, params: Mapping[str, Any], data: Any, source: Path) -> Iterator[Any]:
    """A project's training run: its experiment, lineage tags, params and training data.

    Args:
        params: nested params, logged flat (`train.C`).
        data: the training DataFrame, logged as the run's input dataset `<project>-train`.
        source: where `data` was read from.
    """
    import mlflow

    start(project)
    tags = {**lineage(), "project": project, "stage": "train"}
    # created with them: which process has it open, and that evaluate has yet to log to it, so
    # that what a killed pipeline leaves is found (recovery.py)
    tags |= recovery.run_tags() | {recovery.EVALUATION_TAG: recovery.PENDING}
    # an experiment's runs carry DVC's experiment name; MLflow names the others
    with mlflow.start_run(run_name=os.environ.get("DVC_EXP_NAME"), tags=tags) as run:
        mlflow.log_params(flatten(params))
        with warnings.catch_warnings():
            # MLflow registers its local source class twice and warns that the path is ambiguous
            warnings.filterwarnings("ignore", message="The specified dataset source")
            # and it hints that integer columns cannot hold missing values; ours are checked
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            dataset = mlflow.data.from_pandas(data, source=str(source), name=f"{project}-train")
            mlflow.log_input(dataset, context="training")
        yield run


def record_evaluation(
    run_id: str,
    metrics: Mapping[str, Any],
    metrics_file: Path,
    plots_dir: Path,
    tables: Mapping[str, Any],
    figures: Mapping[str, Any],
) -> None:
    """Write the metrics and plot data DVC tracks; log them and the figures to the model's run.

    Args:
        metrics: possibly nested; logged flat with `_` (`baseline_ndcg_at_10`).
        tables: plot data, CSV file name -> DataFrame.
        figures: PNG file name -> matplotlib figure.
    """
    import mlflow

    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(plots_dir / name, index=False, lineterminator="\n")
    with mlflow.start_run(run_id=run_id):
        mlflow.set_tags(recovery.run_tags())  # this process has the run open now
        mlflow.log_metrics(flatten(metrics, separator="_"))
        for name, figure in figures.items():
            mlflow.log_figure(figure, f"plots/{name}")
        mlflow.log_artifacts(str(plots_dir), "plots/data")
        # last: a version whose run is still `pending` is one recovery may delete
        mlflow.set_tag(recovery.EVALUATION_TAG, recovery.LOGGED)
