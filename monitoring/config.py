"""Where monitoring keeps its state, written once.

Everything lives under `monitoring/` in the repository, or under `$MONITORING_DIR` when that is
set (the services honour the same variable, so tests and containers can move it all at once):

    <project>/requests/<UTC date>.jsonl      the service's request log (projects/core/paths.py)
    <project>/feedback/<UTC date>.jsonl      ground-truth labels that arrived later
    <project>/...                            what a project keeps of its own (its `production`)
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
    "feedback_dir",
    "monitoring_dir",
    "reports_dir",
    "requests_dir",
    "workspace_dir",
]


def feedback_dir(project: str, root: Path | None = None) -> Path:
    return (root or monitoring_dir()) / project / "feedback"


def reports_dir(project: str, root: Path | None = None) -> Path:
    return (root or monitoring_dir()) / project / "reports"


def workspace_dir(root: Path | None = None) -> Path:
    return (root or monitoring_dir()) / "workspace"
