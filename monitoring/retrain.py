"""`make retrain PROJECT=p`: fold p's labelled production data into its raw data and retrain.

Feedback (`<p>/feedback/*.jsonl`) carries the true label of some predictions; joined with the
request log (`<p>/requests/*.jsonl`) on `prediction_id`, every file of both, it gives new
labelled examples:

How is each project's own: its `feedback` module (`projects.core.project`) names the labels
(`LABELS`) and plans the change to its raw data (`fold(joined) -> Fold`), or says why it takes
none (`REFUSAL`: for example, no ground truth arrives for recommendations).

Then `dvc repro --downstream <p>-prepare` reruns p's pipeline on the new data: validation judges
it and the promotion gate decides whether the new model becomes `@champion`. Only a pipeline
that succeeds gets data/raw recorded as a new version in data.dvc; when it fails, data/raw,
dvc.lock and p's pipeline outputs are put back as they were. The logs are only ever read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
import yaml

from monitoring import config
from monitoring.window import Located, read_jsonl
from projects.core import bootstrap, cli, paths
from projects.core.cli import StageError
from projects.core.project import Project, get
from projects.core.registry import read_record

log = logging.getLogger(__name__)
app = cli.app()

# a line of a JSON-lines file: where it was read (`file:line`) and the object it holds
# the column of a labelled request record that holds the label feedback gave it
TRUTH = "truth"
# at most this many `file:line` places are named in a message
SHOWN = 10
LOCK_FILE = paths.ROOT / "dvc.lock"
# `dvc repro`'s line when a stage fails, and a stage's own message (`cli.run`)
FAILED_STAGE = re.compile(r"ERROR: failed to reproduce '(?P<stage>[^']+)'")
STAGE_ERROR = "error: "


# ---- collecting labelled production data ----------------------------------------------------


@dataclass(frozen=True)
class Joined:
    """Request records that feedback labelled, and the feedback that could not be used."""

    labelled: pd.DataFrame  # the records' fields and TRUTH, in request-log order
    bad_feedback: list[str]  # places of feedback without a prediction id or a known label
    unmatched: int  # predictions with feedback that no request log holds


def join(requests: Sequence[Located], feedback: Sequence[Located], labels: Sequence[str]) -> Joined:
    """Label each request record that feedback refers to with the feedback's label.

    Of several feedback records on one prediction the last counts: a later one corrects it.
    """
    truth: dict[str, str] = {}
    bad: list[str] = []
    for where, record in feedback:
        prediction, label = record.get("prediction_id"), record.get("label")
        if isinstance(prediction, str) and isinstance(label, str) and label in labels:
            truth[prediction] = label
        else:
            bad.append(where)
    rows = [
        record | {TRUTH: truth[prediction]}
        for _, record in requests
        if isinstance(prediction := record.get("prediction_id"), str) and prediction in truth
    ]
    found = {row["prediction_id"] for row in rows}
    return Joined(pd.DataFrame(rows), bad, len(truth.keys() - found))


def places(where: Sequence[str]) -> str:
    """The first few places of a list, and how many more there are."""
    shown = ", ".join(where[:SHOWN])
    return shown if len(where) <= SHOWN else f"{shown} and {len(where) - SHOWN} more"


def collect(project: str, labels: Sequence[str]) -> Joined:
    """Join every feedback file of `project` with every request-log file; say what was skipped."""
    requests, bad_requests = read_jsonl(config.requests_dir(project))
    feedback, bad_feedback = read_jsonl(config.feedback_dir(project))
    for what, skipped in (("request-log", bad_requests), ("feedback", bad_feedback)):
        if skipped:
            log.warning(
                "skipped %d %s lines that are not JSON objects (the files are left as they "
                "are): %s",
                len(skipped),
                what,
                places(skipped),
            )
    joined = join(requests, feedback, labels)
    if joined.bad_feedback:
        log.warning(
            "skipped %d feedback records without a prediction_id or a label in %s: %s",
            len(joined.bad_feedback),
            "/".join(labels),
            places(joined.bad_feedback),
        )
    if joined.unmatched:
        log.warning(
            "%d predictions with feedback are in no request log of %s",
            joined.unmatched,
            config.requests_dir(project),
        )
    log.info(
        "%s: %d feedback records, %d logged predictions, %d of them labelled",
        project,
        len(feedback),
        len(requests),
        len(joined.labelled),
    )
    return joined


# ---- folding: pure ----------------------------------------------------------------------------


def failure_message(output: Sequence[str]) -> str:
    """The failing stage and its own message, from the output of `dvc repro`."""
    stage = next((m["stage"] for line in output if (m := FAILED_STAGE.search(line))), None)
    message: list[str] = []
    for i, line in enumerate(output):
        if line.startswith(STAGE_ERROR):  # the stage's message and its indented lines
            message = [line.removeprefix(STAGE_ERROR)]
            for more in output[i + 1 :]:
                if not more.startswith("  "):
                    break
                message.append(more)
    if not message:  # not a StageError (a crash): dvc's own line says what failed
        message = [next((line for line in output if line.startswith("ERROR")), "")]
    text = "\n".join(message).strip() or "see the output above"
    return f"{stage} failed: {text}" if stage else text


def data_version(dvc_file: str) -> str:
    """The md5 a .dvc file's text records for its output."""
    return str(yaml.safe_load(dvc_file)["outs"][0].get("md5", "(none)"))


def decision_summary(report: Mapping[str, Any]) -> str:
    """One line for the promotion gate's decision (`registry.Decision.as_report`)."""
    model, version = report["model"], report["candidate_version"]
    if report["promoted"]:
        verdict = f"{model} v{version} is @champion"
    else:
        verdict = (
            f"{model} v{version} is @challenger, @champion stays v{report['champion_version']}"
        )
    return f"{verdict}: {report['reason']}"


# ---- folding: files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fold:
    """What folding will change in data/raw: the files, a function that writes them, and one
    line saying what it adds."""

    files: tuple[Path, ...]
    write: Callable[[], None]
    summary: str


def nothing_new(project: str, joined: Joined, why: str) -> StageError:
    """The error for a fold that adds nothing; `why` says why, when anything was labelled."""
    if joined.labelled.empty:
        why = (
            f"no feedback in {config.feedback_dir(project)} refers to a prediction in "
            f"{config.requests_dir(project)}"
        )
    return StageError(
        f"no labelled production data for {project} that is not already in "
        f"data/raw/{project}: {why}; nothing was changed"
    )


def append_lines(path: Path, lines: Sequence[str]) -> None:
    """Append lines to a UTF-8 text file, after ending its last line if it is unfinished."""
    if not lines:
        return
    size = path.stat().st_size
    with path.open("rb+") as f:
        f.seek(max(size - 1, 0))
        unfinished = size > 0 and f.read(1) != b"\n"
        f.seek(size)
        f.write(("\n" * unfinished + "".join(f"{line}\n" for line in lines)).encode("utf-8"))


# ---- DVC ------------------------------------------------------------------------------------


def require_recorded_raw() -> None:
    """Refuse to start unless data/raw is what data.dvc records and in the DVC cache, so that a
    failed retrain can put it back exactly.

    Raises:
        StageError: naming how data/raw differs and what to run.
    """
    state = bootstrap.raw_state(paths.RAW_DIR)
    if state == "cached":
        return
    raise StageError(
        f"data/raw is not the version data.dvc records, in the DVC cache ({state}), so a failed "
        "retrain could not put it back: record it first with `make data-record`, or reset it with "
        "`make data-reset` (`make setup` caches a recorded version the cache lacks)"
    )


def repro(project: str) -> tuple[int, list[str]]:
    """Rerun `project`'s pipeline, passing its output through to stderr as it comes.

    Returns:
        The exit status of `dvc repro` and its output lines.
    """
    # stages run `python`: the one of this environment, also when it is not on the PATH
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    command = bootstrap.dvc_command("repro", "--downstream", f"{project}-prepare")
    log.info("running %s", " ".join(["dvc", *command[1:]]))
    output: list[str] = []
    with subprocess.Popen(
        command,
        cwd=paths.ROOT,
        env=os.environ | {"PATH": path},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stderr.write(line)
            sys.stderr.flush()
            output.append(line.rstrip("\n"))
    return process.returncode, output


def put_back(project: str, originals: Mapping[Path, bytes], lock: bytes | None) -> None:
    """Make data/raw what data.dvc records again, and dvc.lock and `project`'s pipeline outputs
    what they were before the retrain."""
    log.info("putting data/raw back as data.dvc records it")
    done = bootstrap.dvc("checkout", "--force", paths.DATA_DVC_FILE.name)
    if done.returncode != 0:
        log.warning("dvc checkout data.dvc failed: %s", done.stderr.strip())
    for path, data in originals.items():
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)  # the bytes read before folding are the recorded ones
    if lock is None or LOCK_FILE.read_bytes() == lock:
        return
    # the stages that succeeded recorded the rejected data in dvc.lock; undo that
    LOCK_FILE.write_bytes(lock)
    stages = [s for s in yaml.safe_load(lock).get("stages", {}) if s.startswith(f"{project}-")]
    done = bootstrap.dvc("checkout", "--force", *stages)
    if done.returncode != 0:
        log.warning(
            "could not restore the outputs of %s (`make repro` will): %s",
            ", ".join(stages),
            done.stderr.strip(),
        )


# ---- the command ----------------------------------------------------------------------------


def _model_version(project: str) -> str | None:
    record = Project(project).config.MODEL_DIR / "model.json"
    return read_record(record)["version"] if record.exists() else None


def report_outcome(project: str, old_version: str, old_model: str | None) -> None:
    """Log the new data version, the newly registered model and the gate's decision."""
    new_version = data_version(paths.DATA_DVC_FILE.read_text())
    log.info("data version %s -> %s, recorded in data.dvc and pushed", old_version, new_version)
    model = _model_version(project)
    if model is None or model == old_model:
        log.info("no new model was trained: the pipeline found its training inputs unchanged")
    else:
        report = json.loads((Project(project).config.REPORTS_DIR / "promotion.json").read_text())
        log.info("registered %s v%s", report["model"], model)
        log.info("promotion: %s", decision_summary(report))
    log.info("commit data.dvc and dvc.lock to keep this data version with the code")


def retrain(project: str) -> None:
    """Fold `project`'s labelled production data into data/raw, rerun its pipeline, and record
    the data as a new version if the pipeline succeeds; put everything back if it fails.

    Raises:
        StageError: nothing to fold, data/raw not recorded, or the pipeline failed.
    """
    feedback = get(project).module("feedback") if get(project).has("feedback") else None
    if feedback is None or not hasattr(feedback, "fold"):
        why = getattr(feedback, "REFUSAL", f"projects/{project}/ has no feedback module")
        raise StageError(f"{project} takes no labelled production data: {why}")
    fold = feedback.fold(collect(project, feedback.LABELS))
    require_recorded_raw()
    old_version = data_version(paths.DATA_DVC_FILE.read_text())
    old_model = _model_version(project)
    originals = {path: path.read_bytes() for path in fold.files}
    lock = LOCK_FILE.read_bytes() if LOCK_FILE.exists() else None
    status, output = 1, []
    try:
        fold.write()
        log.info("folding: %s", fold.summary)
        status, output = repro(project)
    finally:
        if status != 0:  # failed, or interrupted
            put_back(project, originals, lock)
    if status != 0:
        raise StageError(
            f"the retrained pipeline stopped, so nothing was recorded: {failure_message(output)}\n"
            f"data/raw is back to data version {old_version} and data.dvc is unchanged"
        )
    bootstrap.record_raw()
    log.info("folded: %s", fold.summary)
    report_outcome(project, old_version, old_model)


@app.command()
def main(
    project: Annotated[str, typer.Option(help="The project whose model to retrain.")],
) -> None:
    """Fold a project's labelled production data into its raw data as a new data version, and
    rerun its pipeline; the promotion gate decides whether the new model becomes champion."""
    retrain(project)


if __name__ == "__main__":
    cli.run(app)
