"""Stage `traffic-validate`: Great Expectations suites on the parse and on each split's requests.

The log must parse (at most `max_unparsed_share` of its lines may not), the labels must cover
every parsed request with a known kind, and the share of attack requests must be in bounds; the
test split must hold every client kind, or its per-kind figures would be missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from projects.core import cli
from projects.core.validation import Report, validate_file, write_report
from projects.traffic import config
from projects.traffic.config import ValidateParams
from projects.traffic.prepare import PARSE_FILE, SPLITS
from projects.traffic.simulator import ABUSE_KINDS, NORMAL_KINDS, REQUEST_KINDS

CLIENT_KINDS = [*NORMAL_KINDS, *ABUSE_KINDS]
app = cli.app()

COLUMNS = ["line", "client_ip", "time", "method", "path", "status", "client_kind", "request_kind"]


def read_parse_summary(path: Path) -> pd.DataFrame:
    """prepare's parse summary as a one-row frame (its list of bad lines left out)."""
    summary = json.loads(path.read_text())
    return pd.DataFrame([{k: v for k, v in summary.items() if not isinstance(v, list | dict)}])


def parse_expectations(params: ValidateParams) -> list[Any]:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToBeBetween(column="parsed", min_value=params.min_requests),
        gxe.ExpectColumnValuesToBeBetween(
            column="unparsed_share", min_value=0, max_value=params.max_unparsed_share
        ),
    ]


def request_expectations(params: ValidateParams, every_kind: bool) -> list[Any]:
    """The suite of one split's requests; `every_kind`: every client kind must be there."""
    import great_expectations.expectations as gxe

    suite = [
        *(gxe.ExpectColumnToExist(column=column) for column in COLUMNS),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeUnique(column="line"),
        gxe.ExpectColumnValuesToBeBetween(column="status", min_value=100, max_value=599),
        # a request without a label, or with a kind nobody knows
        gxe.ExpectColumnValuesToBeInSet(column="client_kind", value_set=CLIENT_KINDS),
        gxe.ExpectColumnValuesToBeInSet(column="request_kind", value_set=REQUEST_KINDS),
        gxe.ExpectColumnValuesToNotBeNull(column="client_kind"),
        gxe.ExpectColumnValuesToNotBeNull(column="request_kind"),
        gxe.ExpectColumnMeanToBeBetween(
            column="is_attack", min_value=params.min_attack_share, max_value=params.max_attack_share
        ),
    ]
    if every_kind:
        suite.append(
            gxe.ExpectColumnDistinctValuesToContainSet(column="client_kind", value_set=CLIENT_KINDS)
        )
    return suite


def read_requests(path: Path) -> pd.DataFrame:
    """A split's requests, with `is_attack` as a number (missing labels give NaN)."""
    frame = pd.read_parquet(path)
    if "is_attack" in frame:
        frame["is_attack"] = pd.to_numeric(frame["is_attack"], errors="coerce")
    return frame


def validate(prepared_dir: Path, params: ValidateParams) -> list[Report]:
    """Run the suites on the parse summary and each split's requests."""
    reports = [
        validate_file(prepared_dir / PARSE_FILE, read_parse_summary, "traffic_parse",
                      lambda _: parse_expectations(params)),
    ]  # fmt: skip
    for name in SPLITS:
        reports.append(
            validate_file(
                prepared_dir / f"{name}.parquet",
                read_requests,
                f"traffic_{name}",
                lambda _, test=name == "test": request_expectations(params, test),
            )
        )
    return reports


@app.command()
def main(
    prepared_dir: Annotated[Path, typer.Option(help="Folder of the splits and parse summary.")] = (
        config.PREPARED_DIR
    ),
    report: Annotated[Path, typer.Option(help="Where the JSON report goes.")] = (
        config.REPORTS_DIR / "validation.json"
    ),
) -> None:
    """Validate the parse and the splits; exit non-zero listing every failed check."""
    write_report(validate(prepared_dir, config.load().validation), report)


if __name__ == "__main__":
    cli.run(app)
