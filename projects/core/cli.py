"""One way to run a stage's command line: logging set up, expected failures reported plainly."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable

import typer

# Defaults for every stage, also when run as plain `dvc repro` outside make: no telemetry from
# any tool, and MLflow's own INFO chatter and progress bars off.
ENVIRONMENT_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "BENTOML_DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


class StageError(Exception):
    """A failure the user can fix (bad data, bad params, a bad file); shown without a traceback."""


def app() -> typer.Typer:
    """A stage's command line; real bugs keep a plain traceback, user errors never show one."""
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def configure_logging(level: int = logging.INFO) -> None:
    """Log progress to stderr in one short format; quiet the chattiest libraries."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    chatty = ("alembic", "mlflow", "great_expectations", "urllib3", "git", "matplotlib", "py4j")
    for noisy in chatty:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(command: Callable[[], object]) -> None:
    """Run a typer app; a `StageError` becomes `error: <message>` on stderr and exit status 1."""
    for name, value in ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    configure_logging()
    try:
        command()
    except StageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as exc:
        problem = tracking_problem(exc)
        if problem is None:
            raise  # a bug: its traceback is what fixes it
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(1) from None


def tracking_problem(exc: BaseException) -> str | None:
    """What to tell the user when `exc` is MLflow failing to reach its tracking server or being
    refused by it (a server down, a wrong address or password: not a bug); None otherwise."""
    mlflow_exceptions = sys.modules.get("mlflow.exceptions")
    if mlflow_exceptions is None or not isinstance(exc, mlflow_exceptions.MlflowException):
        return None
    uri = os.environ.get("MLFLOW_TRACKING_URI", "the tracking store")
    text = str(exc)
    failing = re.search(r"too many (5\d\d) error responses", text)
    if failing:
        return (
            f"the MLflow tracking server at {uri} answers with errors ({failing[1]}): its "
            "database or artifact store may be down (`make stack-status`; the server's log is "
            ".stack/logs/mlflow.log). Run it again once it answers:"
            " @champion moves only when a promote completes."
        )
    unreachable = ("Connection refused", "Max retries exceeded", "Failed to establish",
                   "Name or service not known")  # fmt: skip
    if any(sign in text for sign in unreachable):
        return (
            f"cannot reach the MLflow tracking server at {uri}: is it running? (`make "
            "stack-status`; `make stack` starts it) Run it again once the server answers:"
            " @champion moves only when a promote completes."
        )
    if "error code 401" in text or "error code 403" in text:
        return (
            f"the MLflow tracking server at {uri} refused the credentials "
            "(MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD; `make stack` writes them "
            "to .stack/team.env), and run it again:"
            " @champion moves only when a promote completes."
        )
    return None
