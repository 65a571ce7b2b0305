"""How labelled production data folds into the log anomaly detector's raw data (`make retrain
PROJECT=anomaly`): the cluster-log lines of each labelled block that `HDFS.log` lacks are appended
to it, and the block's label to `anomaly_label.csv` if it has none there. The lines come from the
cluster's own log (`projects.anomaly.production.cluster_log_dir`), as a log shipper would deliver
them: the request log holds event ids, not lines."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

import pandas as pd

from monitoring.retrain import TRUTH, Fold, Joined, append_lines, nothing_new
from projects.anomaly import config, data
from projects.anomaly.parsing import blocks_in, content_of
from projects.anomaly.production import cluster_log_dir
from projects.core import paths

LABELS = data.LABELS


def block_truth(labelled: pd.DataFrame) -> dict[str, str]:
    """The label of each labelled block; of a block labelled more than once, the latest."""
    if "block_id" not in labelled:
        return {}
    pairs = zip(labelled["block_id"], labelled[TRUTH], strict=True)
    return {block: label for block, label in pairs if isinstance(block, str)}


def new_log_lines(
    log_lines: Iterable[str],
    cluster_lines: Iterable[str],
    truth: Mapping[str, str],
    labelled: Collection[str],
) -> list[str]:
    """The cluster-log lines to append to the log: in cluster-log order and each once, those
    that name a block in `truth` and are not in the log yet.

    A line that also names a block with no label, neither in `truth` nor in `labelled` (the
    label file's blocks), is left out: it would make an unlabelled session, which validation
    rejects. Lines not in the HDFS_v1 format are left out too.
    """
    seen = set(log_lines)
    new: list[str] = []
    for line in cluster_lines:
        content = None if line in seen else content_of(line)
        if content is None:
            continue
        blocks = blocks_in(content)
        if any(b in truth for b in blocks) and all(b in truth or b in labelled for b in blocks):
            new.append(line)
            seen.add(line)
    return new


def new_labels(
    labels: pd.DataFrame, truth: Mapping[str, str], lines: Iterable[str]
) -> pd.DataFrame:
    """Rows (`BlockId`, `Label`) for the blocks of `lines` that `truth` labels and `labels`
    lacks, in order of first mention; a label already in `labels` is kept as it is."""
    known = set(labels["BlockId"])
    blocks = dict.fromkeys(
        block
        for line in lines
        for block in blocks_in(content_of(line) or "")
        if block in truth and block not in known
    )
    return pd.DataFrame({"BlockId": list(blocks), "Label": [truth[b] for b in blocks]}, dtype=str)


def fold(joined: Joined) -> Fold:
    """Plan appending the labelled blocks' new cluster-log lines and labels to the raw data."""
    log_file = config.RAW_DIR / data.LOG_FILE
    labels_file = config.RAW_DIR / data.LABELS_FILE
    cluster_dir = cluster_log_dir()
    truth = block_truth(joined.labelled)
    labels = data.read_labels(labels_file)
    cluster = (line for path in sorted(cluster_dir.glob("*.log")) for line in data.read_lines(path))
    lines = new_log_lines(data.read_lines(log_file), cluster, truth, set(labels["BlockId"]))
    added = new_labels(labels, truth, lines)
    if not lines and added.empty:
        raise nothing_new(
            "anomaly",
            joined,
            f"{cluster_dir} holds no line of the {len(truth)} labelled blocks that "
            f"{log_file.name} lacks",
        )

    def write() -> None:
        append_lines(log_file, lines)
        data.write_frame(pd.concat([labels, added], ignore_index=True), labels_file)

    blocks = {b for line in lines for b in blocks_in(content_of(line) or "") if b in truth}
    anomalous = sum(truth[b] == "Anomaly" for b in blocks)
    summary = (
        f"{len(lines)} lines of {len(blocks)} labelled blocks ({anomalous} anomalous) appended "
        f"to {log_file.relative_to(paths.ROOT)}, {len(added)} labels to {labels_file.name}"
    )
    return Fold((log_file, labels_file), write, summary)
