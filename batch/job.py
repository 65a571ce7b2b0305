"""`make batch-score`: score a file, a folder or a glob with a project's `@champion`.

    python -m batch.job --project anomaly --input 'logs/*.log' --output scored/   (make's way)
    spark-submit --master spark://host:7077 --py-files code.zip batch/job.py \\
        --project anomaly --input 's3a://logs/2026-12-01/' --output s3a://scores/2026-12-01/

The champion is resolved once and its version recorded in every row. The output folder gets one
Parquet table per kind of scored unit (the project's `batch.TABLES`), `rejected/` (input that is
not the project's format: counted and named, not fatal) and `summary.json` (counts, rate of
positives, time), which is also the last line printed. A local output is written beside its
final place and renamed into it at the end, so a failed or killed job leaves no folder there.
`--engine local` runs the project's in-process path over the same input into the same tables:
the reference Spark is compared with, and enough for inputs that fit in memory.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

if __package__ in (None, ""):  # run as a file (`spark-submit batch/job.py`): find the packages
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import typer

from batch import spark as batch_spark
from projects.core import cli, tracking
from projects.core.cli import StageError
from projects.core.project import Project, get

log = logging.getLogger("batch")
app = cli.app()
ENGINES = ("spark", "local")
REMOTE = ("s3a://", "s3://", "hdfs://", "gs://", "abfs://", "abfss://", "wasbs://")
EXAMPLES = 5  # rejected lines named in the summary


def is_remote(location: str) -> bool:
    return location.startswith(REMOTE)


def hidden(relative: Path) -> bool:
    """Whether a path has a part Spark skips when it lists a folder (`.x`, `_SUCCESS`)."""
    return any(part.startswith((".", "_")) for part in relative.parts)


def input_files(pattern: str) -> list[str]:
    """The files a local `pattern` (a file, a folder or a glob) names, sorted; a remote one as
    it is (Spark lists it). Hidden files (`.x`, `_SUCCESS`) are skipped, as Spark skips them.

    Raises:
        StageError: nothing is there, or everything there is empty.
    """
    if is_remote(pattern):
        return [pattern]
    path = Path(pattern).expanduser()
    if glob.has_magic(pattern):
        found = [Path(p) for p in glob.glob(str(path), recursive=True)]
        files = sorted(p for p in found if p.is_file())
        if not files:
            raise StageError(f"INPUT {pattern}: no file matches")
    elif path.is_dir():
        # hidden below the folder too: a failed job's `.x.partial-…`, Spark's `_temporary/`
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and not hidden(p.relative_to(path))
        )
        if not files:
            raise StageError(f"INPUT {pattern}: the folder has no file")
    elif path.is_file():
        files = [path]
    else:
        raise StageError(f"INPUT {pattern}: no such file or folder")
    visible = [f for f in files if not hidden(Path(f.name))]
    if not visible:
        raise StageError(f"INPUT {pattern}: only hidden files (names starting with . or _)")
    if all(f.stat().st_size == 0 for f in visible):
        raise StageError(f"INPUT {pattern}: empty, nothing to score ({len(visible)} empty file(s))")
    return [str(f.resolve()) for f in visible]


def partial_of(output: Path) -> Path:
    """Where a local job writes before its output is complete: beside it, hidden and named so."""
    return output.parent / f".{output.name}.partial-{uuid.uuid4().hex[:8]}"


def check_output(output: str) -> None:
    """Refuse to write over an existing output (it may be a day's finished scores)."""
    if is_remote(output):
        return
    path = Path(output).expanduser()
    if path.exists():
        raise StageError(f"OUTPUT {output} exists: remove it or choose another folder")
    if path.parent.exists() and not path.parent.is_dir():
        raise StageError(f"OUTPUT {output}: {path.parent} is not a folder")


def champion(project: Project, into: Path) -> tuple[str, Path]:
    """The version behind the project's `@champion` and a local copy of its model files.

    Raises:
        StageError: the project has no champion yet.
    """
    import mlflow

    from projects.core import registry

    mlflow.set_tracking_uri(tracking.tracking_uri())
    version = registry.version_by_alias(project.model_name, registry.CHAMPION)
    if version is None:
        raise StageError(f"{project.model_name} has no @champion: run `make run` first")
    # a name of its own: Spark ships files by name, and a session may run several jobs
    into = into / f"{project.name}-v{version}-{uuid.uuid4().hex[:8]}"
    folder = mlflow.artifacts.download_artifacts(
        f"models:/{project.model_name}/{version}", dst_path=str(into)
    )
    return version, Path(folder)


def summarize(
    counts: dict[str, tuple[int, int | None]], reasons: dict[str, int], examples: list[dict]
) -> dict[str, Any]:
    """The summary's tables and rejected part.

    Args:
        counts: table -> (rows, positives; None when the table has no positive column).
        reasons: rejected rows per reason.
        examples: a few rejected rows (file, text, reason).
    """
    tables = {
        name: {"rows": rows}
        | (
            {}
            if positives is None
            else {"positives": positives, "positive_rate": positives / rows if rows else 0.0}
        )
        for name, (rows, positives) in counts.items()
    }
    ordered = dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0])))
    return {
        "tables": tables,
        "rejected": {
            "rows": int(sum(reasons.values())),
            "reasons": {reason: int(n) for reason, n in ordered.items()},
            "examples": examples[:EXAMPLES],
        },
    }


def score_with_spark(
    project: Project, files: list[str], model: batch_spark.Model, target: str, master: str | None
) -> tuple[dict[str, Any], str]:
    """Run the project's Spark job into `target`; return the summary's counts and the master."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as sf

    spark = batch_spark.session(master, f"batch-score-{project.name}")
    module = project.module("batch")
    try:
        tables = module.spark(spark, files, model.ship(spark))
        counts = {}
        for name, frame in tables.items():
            frame.write.parquet(f"{target}/{name}")
        for name, table in module.TABLES.items():
            written = spark.read.parquet(f"{target}/{name}")
            positive = table.positive
            if positive is None:
                counts[name] = (written.count(), None)
            else:
                row = written.agg(
                    sf.count(sf.lit(1)), sf.sum(sf.col(positive).cast("long"))
                ).first()
                counts[name] = (int(row[0]), int(row[1] or 0))
        rejected = spark.read.parquet(f"{target}/rejected")
        reasons = rejected.groupBy("reason").count().toPandas()
        examples = rejected.limit(EXAMPLES).toPandas().to_dict("records")
        summary = summarize(
            counts, dict(zip(reasons["reason"], reasons["count"], strict=True)), examples
        )
        return summary, spark.sparkContext.master
    except AnalysisException as exc:
        raise StageError(f"Spark cannot read or write: {exc.getMessage()}") from None
    finally:
        spark.catalog.clearCache()  # what the job kept on disk, for a session that goes on


def score_locally(
    project: Project, files: list[str], model: batch_spark.Model, target: str
) -> tuple[dict[str, Any], str]:
    """The in-process path into `target`, the same tables as Spark's; return the counts."""
    module = project.module("batch")
    tables = module.local([Path(f) for f in files], model.get(), model.version)
    counts = {}
    for name, frame in tables.items():
        folder = Path(target) / name
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "part-00000.parquet", index=False)
        if name in module.TABLES:
            positive = module.TABLES[name].positive
            counts[name] = (len(frame), None if positive is None else int(frame[positive].sum()))
    rejected = tables["rejected"]
    reasons = Counter(rejected["reason"])
    examples = rejected.head(EXAMPLES).to_dict("records")
    return summarize(counts, reasons, examples), "local (in process)"


def run(
    project_name: str, pattern: str, output: str, engine: str = "spark", master: str | None = None
) -> dict[str, Any]:
    """Score `pattern` with the project's champion into `output`; return the summary.

    Raises:
        StageError: bad input, no champion, no Java, an output that exists; or a job that
            failed, in which case nothing is left at `output`.
    """
    if engine not in ENGINES:
        raise StageError(f"--engine {engine}: choose from {', '.join(ENGINES)}")
    project = get(project_name)
    if not project.has("batch"):
        raise StageError(
            f"project {project_name} has no batch path (projects/{project_name}/batch.py)"
        )
    files = input_files(pattern)
    check_output(output)
    if engine == "local" and (is_remote(pattern) or is_remote(output)):
        raise StageError(
            "--engine local reads and writes local files only; use Spark for s3a:// etc."
        )
    if engine == "spark":
        batch_spark.java_version()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="batch-model-") as tmp:
        version, folder = champion(project, Path(tmp))
        log.info("%s@champion is version %s", project.model_name, version)
        model = batch_spark.Model(project.name, str(folder), version)
        local_output = not is_remote(output)
        target = partial_of(Path(output).expanduser().resolve()) if local_output else None
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
        try:
            where = str(target) if target is not None else output
            if engine == "spark":
                summary, master_used = score_with_spark(project, files, model, where, master)
            else:
                summary, master_used = score_locally(project, files, model, where)
            refuse_if_nothing_scored(summary)
            summary = {
                "project": project.name,
                "model": project.model_name,
                "version": version,
                "engine": engine,
                "master": master_used,
                "input": pattern,
                "files": len(files),
                "output": output,
                "seconds": round(time.time() - started, 3),
            } | summary
            write_summary(where, summary)
            if target is not None:
                os.replace(target, Path(output).expanduser().resolve())
        except BaseException:
            if target is not None:
                shutil.rmtree(target, ignore_errors=True)
            raise
    return summary


def refuse_if_nothing_scored(summary: dict[str, Any]) -> None:
    """A job that rejected every line was given the wrong input: say so, keep no output.

    Raises:
        StageError: no table has a row and some input was rejected.
    """
    rejected = summary["rejected"]
    if rejected["rows"] and not any(t["rows"] for t in summary["tables"].values()):
        examples = "; ".join(f"{e['file']}: {e['text'][:60]!r}" for e in rejected["examples"][:3])
        raise StageError(
            f"nothing could be scored: all {rejected['rows']} lines were rejected "
            f"({', '.join(rejected['reasons'])}); is INPUT this project's format? {examples}"
        )


def write_summary(where: str, summary: dict[str, Any]) -> None:
    """`summary.json`, the last file written: its presence says the output is complete."""
    text = json.dumps(summary, indent=1, default=str) + "\n"
    if is_remote(where):
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        spark.sparkContext.parallelize([text], 1).saveAsTextFile(f"{where}/summary.json")
    else:
        Path(where, "summary.json").write_text(text)


@app.command()
def main(
    project: Annotated[str, typer.Option(help="The project whose @champion scores.")],
    input: Annotated[str, typer.Option("--input", help="A file, a folder or a glob (quoted).")],
    output: Annotated[str, typer.Option(help="The folder to create for the scores.")],
    engine: Annotated[str, typer.Option(help="spark, or local: in this process.")] = "spark",
    master: Annotated[
        str | None,
        typer.Option(help="Spark's master (default local[*]; spark-submit's own under it)."),
    ] = None,
) -> None:
    """Score the input with the project's champion; print the summary as the last line."""
    summary = run(project, input, output, engine, master)
    tables = ", ".join(f"{n}: {t['rows']} rows" for n, t in summary["tables"].items())
    log.info(
        "%s v%s scored %s in %.1f s: %s; %d rejected; into %s",
        summary["model"], summary["version"], summary["input"], summary["seconds"], tables,
        summary["rejected"]["rows"], summary["output"],
    )  # fmt: skip
    sys.stderr.flush()
    print(json.dumps(summary, default=str), flush=True)


if __name__ == "__main__":
    cli.run(app)
