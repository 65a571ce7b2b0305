"""What every project's batch module needs from Spark: the session, Java, the champion's files on
the executors, and input lines with the file they came from.

pyspark is imported only inside functions: it is an optional dependency group (`spark`), and
the code tests import this module without it.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from projects.core.cli import StageError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

MIN_JAVA = 17  # Spark 4 runs on Java 17 and 21


def java_version(java: str | None = None) -> int:
    """The major version of the Java that Spark will start (`$JAVA_HOME/bin/java`, else `java`
    on the PATH).

    Raises:
        StageError: there is none, or it is older than Spark 4 needs.
    """
    home = os.environ.get("JAVA_HOME", "").strip()
    java = java or (str(Path(home) / "bin" / "java") if home else shutil.which("java"))
    install = "`make java` installs Debian's openjdk-17-jre-headless"
    if not java or not Path(java).exists():
        where = f"JAVA_HOME={home} has no bin/java" if home else "no `java` on the PATH"
        raise StageError(f"Spark needs Java {MIN_JAVA} or newer: {where}; {install}")
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StageError(f"{java} -version failed ({exc}); {install}") from None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if done.returncode != 0 or not found:
        raise StageError(f"{java} -version did not name a version; {install}")
    major = int(found[1]) if found[1] != "1" else int(found[2] or 0)  # "1.8.0" is Java 8
    if major < MIN_JAVA:
        raise StageError(f"{java} is Java {major}; Spark needs {MIN_JAVA} or newer: {install}")
    return major


def under_spark_submit() -> bool:
    """Whether `spark-submit` started this driver (it then owns the master and the settings)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def session(master: str | None, app_name: str) -> SparkSession:
    """The Spark session of a job: the master given (or spark-submit's, or `local[*]`), times in
    UTC, quiet logs, and on a laptop nothing listening beyond 127.0.0.1."""
    from pyspark.sql import SparkSession

    # the executors' Python must be this environment's (pyarrow, the projects' code); on a
    # cluster PYSPARK_PYTHON names the environment shipped to them (docs/batch.md)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")  # the job logs its own summary
    )
    if not under_spark_submit():
        master = master or "local[*]"
        builder = builder.master(master)
        if master.startswith("local"):
            builder = (
                builder.config("spark.driver.bindAddress", "127.0.0.1")
                .config("spark.driver.host", "127.0.0.1")
                .config("spark.ui.enabled", os.environ.get("SPARK_UI", "false"))
            )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    return spark


@dataclass(frozen=True)
class Model:
    """The champion's model files, as the executors find them: shipped once with the job
    (`SparkContext.addFile`), loaded once per Python worker by the project's `batch.load`.

    It is what the functions a project maps over partitions carry (they are pickled to every
    task): a name and a folder, never the model itself.
    """

    project: str
    folder: str  # the driver's copy of the downloaded MLflow model
    version: str
    shipped: bool = False  # whether `ship` sent it with the Spark job

    def ship(self, spark: SparkSession) -> Model:
        spark.sparkContext.addFile(self.folder, recursive=True)
        return Model(self.project, self.folder, self.version, shipped=True)

    def path(self) -> Path:
        """The model's folder where this code runs (an executor's copy once shipped)."""
        if not self.shipped:
            return Path(self.folder)
        from pyspark import SparkFiles

        return Path(SparkFiles.get(Path(self.folder).name))

    def get(self) -> Any:
        """The project's scorer for this model, loaded once per process."""
        return _load(self.project, str(self.path()))


@functools.lru_cache(maxsize=4)
def _load(project: str, folder: str) -> Any:
    from projects.core.project import get

    return get(project).module("batch").load(Path(folder))


def local_path(file: str) -> str:
    """A `file:` URI (as Spark names the files it reads) as the path it names, which is how the
    in-process path names them; any other location as it is."""
    return unquote(urlparse(file).path) if file.startswith("file:") else file


def literal(file: str) -> str:
    """A local file's path as Spark reads that file only: Hadoop takes `[`, `{`, `*`, `?` in a
    path for a glob (`a[1].log` would read `a1.log`); a URL (a remote input) stays a pattern."""
    return file if "://" in file else re.sub(r"([\[\]{}*?\\])", r"\\\1", file)


def file_column():
    """The file a row came from, as the in-process path names it: a local file by its path
    (Spark says `file:/…`), a remote one by its URL."""
    from pyspark.sql import functions as sf

    uri = sf.col("_metadata.file_path")
    # url_decode takes `+` for a space, as in a query string: a `+` in a path is kept by
    # encoding it first
    path = sf.regexp_replace(sf.regexp_replace(uri, "^file:(//)?", ""), r"\+", "%2B")
    return sf.when(uri.startswith("file:"), sf.url_decode(path)).otherwise(uri).alias("file")


def text_lines(spark: SparkSession, files: list[str]) -> DataFrame:
    """Every line of `files` (`value`) with the file it came from (`file`), in file order."""

    return spark.read.text([literal(f) for f in files]).select(file_column(), "value")


def csv_rows(spark: SparkSession, files: list[str], column: str) -> DataFrame:
    """Column `column` of CSV files with a header (RFC 4180: quoted fields may hold newlines),
    as `value`, with `file`.

    Raises:
        StageError: a file has no such column.
    """
    from pyspark.sql import functions as sf

    csv = spark.read.options(header=True, multiLine=True, escape='"')
    frame = csv.csv([literal(f) for f in files])
    if column not in frame.columns:
        raise StageError(f"INPUT: the CSV has no `{column}` column (it has {frame.columns})")
    return frame.select(file_column(), sf.col(column).cast("string").alias("value"))
