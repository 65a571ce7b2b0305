"""Where monitoring keeps its state, written once.

Everything lives under `monitoring/` in the repository, or under `$MONITORING_DIR` when that is
set (the services honour the same variable, so tests and containers can move it all at once):

    <project>/requests/<UTC date>.jsonl      the service's request log (projects/core/paths.py)
    <project>/feedback/<UTC date>.jsonl      ground-truth labels that arrived later
    anomaly/cluster_logs/<UTC date>.log      the raw HDFS lines the cluster logged
    <project>/reports/<window>.html|.json    Evidently's report of each window
    <project>/cursor.json                    how far the request log has been monitored
    <project>/latest.json                    the last window's verdict and reasons
    workspace/                               the Evidently workspace behind `make dashboards`
"""

from __future__ import annotations

from pathlib import Path

from projects.core.paths import monitoring_dir, requests_dir

# the monitoring root and the request logs are where the services write them too
__all__ = [
    "PROJECTS",
    "cluster_log_dir",
    "feedback_dir",
    "monitoring_dir",
    "reports_dir",
    "requests_dir",
    "workspace_dir",
]

PROJECTS = ("spam", "recommend", "anomaly")


def feedback_dir(project: str, root: Path | None = None) -> Path:
    return (root or monitoring_dir()) / project / "feedback"


def cluster_log_dir(root: Path | None = None) -> Path:
    return (root or monitoring_dir()) / "anomaly" / "cluster_logs"


def reports_dir(project: str, root: Path | None = None) -> Path:
    return (root or monitoring_dir()) / project / "reports"


def workspace_dir(root: Path | None = None) -> Path:
    return (root or monitoring_dir()) / "workspace"
