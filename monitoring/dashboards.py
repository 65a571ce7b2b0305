"""`make dashboards`: the Evidently workspace that `make monitor` fills, served by `evidently ui`.

One workspace project per project, whose dashboard draws over time: the share of drifted
columns, the prediction distribution, quality from feedback labels, request volume, and the
project's own measures. Each `make monitor` run adds one snapshot per project.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from monitoring import config
from monitoring.specs import Series, Spec, specs
from projects.core import cli

app = cli.app()

TAB = "Monitoring"


def open_workspace(directory: Path) -> Any:
    """The local workspace at `directory`, created on first use."""
    from evidently.ui.workspace import Workspace

    return Workspace.create(str(directory))


def _line(title: str, series: list[Series], description: str, size: str = "half") -> Any:
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    values = [PanelMetric(legend=legend, metric=metric, metric_labels=labels)
              for legend, metric, labels in series]  # fmt: skip
    return line_plot_panel(title, values, description=description, size=size)


def panels(spec: Spec, labelled: bool) -> list[Any]:
    """The dashboard's panels, in order."""
    drift = _line(
        "Share of drifted columns",
        [("share drifted", "DriftedColumnsCount", {"value_type": "share"})],
        "Columns whose distance from the reference reaches params.yaml's column_threshold.",
    )
    volume = _line(
        "Request volume", [("requests", "WindowRequests", {})], "Requests in each window."
    )
    title, series = spec.prediction_panel
    predictions = _line(title, series, "The prediction distribution of each window.")
    title, series = spec.measure_panel
    measures = _line(title, series, f"{spec.name}'s own measures.")
    result = [drift, predictions, measures, volume]
    if labelled:
        quality = [(m, "FeedbackQuality", {"measure": m}) for m in ("f1", "precision", "recall")]
        result.insert(2, _line("Quality from feedback labels", quality,
                               "On the predictions whose ground truth has arrived."))  # fmt: skip
    return result


def project_of(workspace: Any, spec: Spec) -> Any:
    """The workspace project of `spec`, created with its dashboard on first use."""
    found = workspace.search_project(spec.name)
    if found:
        return found[0]
    project = workspace.create_project(spec.name)
    project.description = spec.title
    for panel in panels(spec, spec.labelled):
        project.dashboard.add_panel(panel, tab=TAB)
    project.save()
    return project


def add_snapshot(workspace: Any, spec: Spec, snapshot: Any) -> None:
    workspace.add_run(project_of(workspace, spec).id, snapshot, include_data=False)


@app.command()
def main(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the UI.")] = 8000,
) -> None:
    """Serve the workspace with `evidently ui` (every project's dashboard exists, even before
    the first `make monitor`)."""
    directory = config.workspace_dir()
    workspace = open_workspace(directory)
    for spec in specs().values():
        project_of(workspace, spec)
    evidently = Path(sys.executable).with_name("evidently")
    command = [
        str(evidently),
        "ui",
        "--workspace",
        str(directory),
        "--host",
        host,
        "--port",
        str(port),
    ]
    print(f"Evidently UI: http://{host}:{port} (Ctrl-C stops it)", flush=True)
    os.execv(command[0], command)


if __name__ == "__main__":
    cli.run(app)
