"""Where monitoring keeps its state, written once.

Everything lives under `monitoring/` in the repository, or under `$MONITORING_DIR` when that is
set (the services honour the same variable, so tests and containers can move it all at once):

    <project>/requests/<UTC date>.jsonl      the service's request log (services.common)
    <project>/feedback/<UTC date>.jsonl      ground-truth labels that arrived later
    anomaly/cluster_logs/<UTC date>.log      the raw HDFS lines the cluster logged
    <project>/reports/<window>.html|.json    Evidently's report of each window
    <project>/cursor.json                    how far the request log has been monitored
    <project>/latest.json                    the last window's verdict and reasons
    workspace/                               the Evidently workspace behind `make dashboards`
"""

from __future__ import annotations

import os
from pathlib import Path

from projects.core import paths

PROJECTS = ("spam", "recommend", "anomaly")


def monitoring_dir() -> Path:
    """The root of monitoring's state: `$MONITORING_DIR`, else the repository's `monitoring/`."""
    return Path(os.environ.get("MONITORING_DIR", paths.ROOT / "monitoring"))


def requests_dir(project: str, root: Path | None = None) -> Path:
    return (root or monitoring_dir()) / project / "requests"


def feedback_dir(project: str, root: Path | None = None) -> Path:
    return (root or monitoring_dir()) / project / "feedback"


def cluster_log_dir(root: Path | None = None) -> Path:
    return (root or monitoring_dir()) / "anomaly" / "cluster_logs"


def reports_dir(project: str, root: Path | None = None) -> Path:
    return (root or monitoring_dir()) / project / "reports"


def workspace_dir(root: Path | None = None) -> Path:
    return (root or monitoring_dir()) / "workspace"
