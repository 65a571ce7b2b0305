"""One way to run a stage's command line: logging set up, expected failures reported plainly."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


class StageError(Exception):
    """A failure the user can fix (bad data, bad params, a bad file); shown without a traceback."""


def configure_logging(level: int = logging.INFO) -> None:
    """Log progress to stderr in one short format; quiet the chattiest libraries."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("alembic", "mlflow", "great_expectations", "urllib3", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(app: Callable[[], object]) -> None:
    """Run a typer app; a `StageError` becomes `error: <message>` on stderr and exit status 1."""
    configure_logging()
    try:
        app()
    except StageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
