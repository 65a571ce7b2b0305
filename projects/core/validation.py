"""Great Expectations suites run on DataFrames, summarised as deterministic reports.

Suites are defined in code by each project. A report holds no timestamps or run ids, so DVC sees
the same bytes for the same data.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from projects.core.cli import StageError
from projects.core.paths import ROOT

log = logging.getLogger(__name__)

Report = dict[str, Any]


@functools.cache
def _gx_context() -> Any:
    """One ephemeral GX context per process, with progress bars off."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX sets this logger to INFO on import; its messages are about temporary docs folders
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _summarise(result: Any) -> dict[str, Any]:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id",)}
    outcome: dict[str, Any] = {
        "expectation": config.type,
        "kwargs": kwargs,
        "success": result.success,
    }
    details = result.result or {}
    for key in ("observed_value", "unexpected_count", "unexpected_percent"):
        if key in details:
            outcome[key] = details[key]
    if details.get("partial_unexpected_list"):
        outcome["unexpected_examples"] = [
            str(v)[:80] for v in details["partial_unexpected_list"][:5]
        ]
    if result.exception_info and result.exception_info.get("raised_exception"):
        outcome["error"] = result.exception_info.get("exception_message")
    return outcome


def run_suite(frame: pd.DataFrame, name: str, expectations: Sequence[Any]) -> Report:
    """Validate `frame` against a suite of GX expectations; return a JSON-able summary."""
    import great_expectations as gx

    context = _gx_context()
    try:
        batch = (
            context.data_sources.add_pandas(name)
            .add_dataframe_asset(name)
            .add_batch_definition_whole_dataframe(name)
            .get_batch(batch_parameters={"dataframe": frame})
        )
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=list(expectations)))
        result = batch.validate(suite)
    finally:
        # the context lives for the process; free the names for the next validation
        if name in context.data_sources.all():
            context.data_sources.delete(name)
        if any(existing.name == name for existing in context.suites.all()):
            context.suites.delete(name)
    results = [_summarise(r) for r in result.results]
    return {"suite": name, "success": bool(result.success), "rows": len(frame), "results": results}


def validate_file(
    path: Path,
    read: Callable[[Path], pd.DataFrame],
    name: str,
    expectations: Callable[[pd.DataFrame], Sequence[Any]],
) -> Report:
    """Read `path` and run a suite on it; an unreadable file is a failed report, not a crash."""
    try:
        frame = read(path)
    except FileNotFoundError:
        problem = "file is missing"
    except pd.errors.EmptyDataError:
        problem = "file is empty"
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        problem = f"file cannot be parsed: {exc}"
    else:
        report = run_suite(frame, name, expectations(frame))
        return {"file": _display(path), **report}
    return {"file": _display(path), "suite": name, "success": False, "rows": 0, "error": problem}


def _display(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def failures(report: Report) -> list[str]:
    """One readable line per failed check of a report."""
    if "error" in report:
        return [f"{report['file']}: {report['error']}"]
    lines = []
    for check in report["results"]:
        if check["success"]:
            continue
        target = check["kwargs"].get("column", "table")
        limits = {k: v for k, v in check["kwargs"].items() if k != "column"}
        found = check.get("error") or check.get("observed_value")
        if "unexpected_count" in check:
            found = (
                f"{check['unexpected_count']} unexpected, e.g. {check.get('unexpected_examples')}"
            )
        lines.append(f"{report['file']}: {target}: {check['expectation']} {limits} -> {found}")
    return lines


def write_report(reports: list[Report], path: Path) -> None:
    """Write the reports as sorted, indented JSON; raise naming every failure if any failed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    success = all(r["success"] for r in reports)
    with path.open("w") as f:
        json.dump(
            {"success": success, "reports": reports}, f, indent=2, sort_keys=True, default=str
        )
        f.write("\n")
    if not success:
        problems = [line for r in reports for line in failures(r)]
        raise StageError("data validation failed:\n  " + "\n  ".join(problems))
    log.info("validation passed: %s", ", ".join(r["file"] for r in reports))
