"""`make analyze-traffic [LOG=file] [OUT=report.json]`: the champion's verdicts on an access log.

Any access log in the Combined Log Format (nginx's and Apache's default; the request body and
response time may follow, as nginx logs them) is read, lines that do not parse are counted and
named (file and line), and the `@champion` of the request pattern analyzer judges every request
and every client session. Without `LOG`, it reads the platform's own access logs, the ones every
service writes (`<monitoring dir>/<project>/access/*.log`): the analyzer watches the platform.

The report (JSON) holds the flagged client sessions and requests with their reasons, a summary
per client, and the unparseable lines; the last line printed is
`{"requests", "parsed", "clients", "flagged_clients", "flagged_requests"}`.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from projects.core import cli, paths, tracking
from projects.core.cli import StageError
from projects.traffic import config
from projects.traffic.analyzer import Analysis, Analyzer
from projects.traffic.logformat import BadLine, Parsed, read_file

log = logging.getLogger(__name__)
app = cli.app()

SHOWN = 10  # bad lines named on the terminal; the report holds up to REPORTED
REPORTED = 1000


def platform_logs(root: Path | None = None) -> list[Path]:
    """The access logs the platform's services wrote, oldest day first."""
    root = root or paths.monitoring_dir()
    return sorted(root.glob("*/access/*.log"), key=lambda p: (p.name, str(p)))


def read_logs(files: list[Path]) -> Parsed:
    """Every file's parsed requests in one frame (`source` names each bad line's file).

    Raises:
        StageError: a file is missing or unreadable, or no file has a line.
    """
    frames, bad, total = [], [], 0
    for path in files:
        if not path.is_file():
            raise StageError(f"{path}: no such file")
        try:
            parsed = read_file(path)
        except OSError as exc:
            raise StageError(f"{path}: cannot read it: {exc}") from None
        frames.append(parsed.frame.assign(source=str(path)))
        bad += [BadLine(str(path), b.line, b.reason, b.text) for b in parsed.bad]
        total += parsed.total
    if total == 0:
        raise StageError(f"{', '.join(map(str, files))}: empty, no line to analyse")
    return Parsed(pd.concat(frames, ignore_index=True), bad, total)


def check_parsed(parsed: Parsed) -> None:
    """Refuse a log of which no line parses, naming what the first lines are."""
    if len(parsed.frame):
        return
    examples = "; ".join(f"{b.source}:{b.line}: {b.reason}" for b in parsed.bad[:3])
    raise StageError(
        f"none of the {parsed.total} lines is an access-log line in the Combined Log Format "
        f"(is it another kind of log?): {examples}"
    )


def report(parsed: Parsed, analysis: Analysis) -> dict[str, Any]:
    """The report: summary, flagged sessions and requests with reasons, unparseable lines."""
    requests, clients = analysis.requests, analysis.clients
    flagged = requests[requests["flagged"]]
    sessions = clients.assign(
        start=pd.to_datetime(clients["start"], unit="s", utc=True).astype(str),
        end=pd.to_datetime(clients["end"], unit="s", utc=True).astype(str),
    )
    sources = parsed.frame["source"].to_numpy()
    return {
        "summary": summary(parsed, analysis),
        "flagged_sessions": sessions[sessions["flagged"]].to_dict("records"),
        "flagged_requests": [
            {"source": sources[i], **row}
            for i, row in zip(flagged.index, flagged.to_dict("records"), strict=True)
        ],
        "sessions": sessions.drop(columns=["reasons"]).to_dict("records"),
        "unparsed": [
            {"source": b.source, "line": b.line, "reason": b.reason} for b in parsed.bad[:REPORTED]
        ],
    }


def summary(parsed: Parsed, analysis: Analysis) -> dict[str, int]:
    """The counts of the last line."""
    clients = analysis.clients
    return {
        "requests": parsed.total,
        "parsed": len(parsed.frame),
        "clients": int(clients[["client_ip", "user_agent"]].drop_duplicates().shape[0]),
        "flagged_clients": int(
            clients.loc[clients["flagged"], ["client_ip", "user_agent"]].drop_duplicates().shape[0]
        ),
        "flagged_requests": int(analysis.requests["flagged"].sum()),
    }


def champion() -> tuple[Analyzer, str]:
    """The champion's analyzer and version.

    Raises:
        StageError: there is no champion yet.
    """
    import mlflow

    from projects.core import registry

    mlflow.set_tracking_uri(tracking.tracking_uri())
    version = registry.version_by_alias(config.MODEL_NAME, registry.CHAMPION)
    if version is None:
        raise StageError(f"{config.MODEL_NAME} has no @champion: run `make run` first")
    model = registry.load_pyfunc_model(f"models:/{config.MODEL_NAME}/{version}")
    return model.unwrap_python_model().analyzer, version


@app.command()
def main(
    log_file: Annotated[
        list[Path] | None,
        typer.Option("--log", help="An access log (repeat for several); default: the platform's."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where the JSON report goes.")] = None,
) -> None:
    """Judge every request and client session of an access log with the champion."""
    files = list(log_file or [])
    if not files:
        files = platform_logs()
        if not files:
            raise StageError(
                f"no access log of the platform's services in {paths.monitoring_dir()}/*/access/:"
                " start them (`make serve`) and send traffic (`make simulate`), or give LOG=file"
            )
    parsed = read_logs(files)
    for bad in parsed.bad[:SHOWN]:
        log.warning("unparseable: %s:%d: %s", bad.source, bad.line, bad.reason)
    if len(parsed.bad) > SHOWN:
        log.warning(
            "... and %d more unparseable lines (all in the report)", len(parsed.bad) - SHOWN
        )
    check_parsed(parsed)
    analyzer, version = champion()
    analysis = analyzer.analyze(parsed.frame)
    result = report(parsed, analysis) | {"model_version": version}
    target = out or paths.monitoring_dir() / config.NAME / "analysis.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=1, default=str) + "\n")
    counts = result["summary"]
    log.info(
        "%d of %d lines parsed; %d of %d clients and %d requests flagged by %s v%s; report: %s",
        counts["parsed"], counts["requests"], counts["flagged_clients"], counts["clients"],
        counts["flagged_requests"], config.MODEL_NAME, version, target,
    )  # fmt: skip
    sys.stderr.flush()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    cli.run(app)
