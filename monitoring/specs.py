"""What monitoring measures for a project, beyond drift and quality, and how the dashboards draw
it: the `Spec` each project's `monitor` module declares as `SPEC`. Column names come from the
project's `reference` module, which owns the features."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from projects.core.project import discover

# (panel title, [(legend, metric type, labels)]) for the project-specific dashboard panels
Series = tuple[str, str, dict[str, str]]


@dataclass(frozen=True)
class Spec:
    """One project as monitoring sees it."""

    name: str
    title: str
    labelled: bool  # ground truth arrives as feedback
    prediction_panel: tuple[str, list[Series]]  # the prediction distribution over time
    measure_panel: tuple[str, list[Series]]  # the project's own measures over time
    measures: Callable[[dict[str, Any]], list[Any]]  # its Evidently metrics, given the context

    @property
    def reference(self) -> ModuleType:
        """The project's `reference` module: `schema(context)` and `window_frame(...)`."""
        return importlib.import_module(f"projects.{self.name}.reference")


def share(column: str) -> dict[str, str]:
    """The share of a `CategoryCount`; its category is not a label of its series."""
    return {"column": column, "value_type": "share"}


def specs(chosen: list[str] | None = None) -> dict[str, Spec]:
    """The `SPEC` of every project that has a `monitor` module (of `chosen` ones, if given)."""
    return {
        project.name: project.module("monitor").SPEC
        for project in discover()
        if project.has("monitor") and (not chosen or project.name in chosen)
    }
