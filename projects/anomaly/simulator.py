"""A seeded simulator of an HDFS cluster's logs, in Loghub's HDFS_v1 format, with labels.

Each block goes through HDFS's write life cycle: the NameNode allocates it, a pipeline of
DataNodes receives it (one `Receiving`, `PacketResponder … terminating` and `Received` per
replica), the NameNode records each replica (`addStoredBlock`), clients read it (`Served`, with
the occasional harmless `Got exception while serving`), the scanner verifies it, it may be
re-replicated, and it is often deleted at the end of the job. The lines of all blocks are
interleaved in time, as in the real log.

About `anomaly_share` of the blocks go wrong in one of the ways seen in HDFS. Some add error lines
(write exceptions, failed transfers, deletion errors, redundant `addStoredBlock`); others only
change how many normal lines there are, or their order (a responder that never terminates, a
session cut short, a block deleted before it was stored).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

BLOCK_SIZE = 67108864
START = dt.datetime(2008, 11, 9, 20, 30)
NAMESYSTEM = "dfs.FSNamesystem"
XCEIVER = "dfs.DataNode$DataXceiver"
RESPONDER = "dfs.DataNode$PacketResponder"
DATASET = "dfs.FSDataset"
SCANNER = "dfs.DataBlockScanner"
TRANSFER = "dfs.DataNode$DataTransfer"
DATANODE = "dfs.DataNode"

# kind -> share among anomalous blocks
ANOMALY_KINDS = {
    "write_exception": 0.25,
    "responder_not_terminating": 0.15,
    "redundant_add": 0.12,
    "failed_transfer": 0.13,
    "deletion_error": 0.10,
    "cut_short": 0.21,
    "deleted_before_stored": 0.04,
}


@dataclass
class _Block:
    """The lines of one block, as (seconds after START, level, component, content)."""

    block_id: str
    events: list[tuple[float, str, str, str]] = field(default_factory=list)

    def log(self, at: float, component: str, content: str, level: str = "INFO") -> None:
        self.events.append((at, level, component, content))


class _Cluster:
    """Random choices about the cluster: datanodes, clients, ports, sizes."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.datanodes = [
            f"10.25{rng.integers(0, 2)}.{rng.integers(1, 255)}.{rng.integers(1, 255)}"
            for _ in range(200)
        ]

    def nodes(self, n: int) -> list[str]:
        return [self.datanodes[i] for i in self.rng.choice(len(self.datanodes), n, replace=False)]

    def port(self) -> int:
        return int(self.rng.integers(32768, 61000))

    def block_id(self) -> str:
        return f"blk_{int(self.rng.integers(-(2**63), 2**63 - 1))}"


def _write(
    block: _Block,
    c: _Cluster,
    t0: float,
    nodes: list[str],
    size: int,
    fail_at: int | None,
    stored: bool = True,
) -> float:
    """The write pipeline; `fail_at` is the replica whose write breaks (None: all succeed)."""
    rng, b = c.rng, block.block_id
    task = int(rng.integers(0, 2000))
    block.log(
        t0,
        NAMESYSTEM,
        f"BLOCK* NameSystem.allocateBlock: /user/root/rand/_temporary/"
        f"_task_200811092030_0001_m_{task:06d}_0/part-{task:05d}. {b}",
    )
    client = c.nodes(1)[0]
    sources = [client, *nodes[:-1]]
    t = t0 + rng.uniform(0.1, 2)
    for src, dst in zip(sources, nodes, strict=True):
        block.log(t, XCEIVER, f"Receiving block {b} src: /{src}:{c.port()} dest: /{dst}:50010")
        t += rng.uniform(0, 0.5)
    t_done = t + rng.uniform(1, 40)
    replicas = len(nodes) if fail_at is None else fail_at
    if fail_at is not None:
        _write_failure(block, c, t_done, nodes, fail_at)
    for i in range(replicas):
        at = t_done + rng.uniform(0, 2)
        block.log(at, RESPONDER, f"PacketResponder {len(nodes) - 1 - i} for block {b} terminating")
        block.log(at, RESPONDER, f"Received block {b} of size {size} from /{sources[i]}")
        if stored:
            stored_line = f"blockMap updated: {nodes[i]}:50010 is added to {b} size {size}"
            block.log(
                at + rng.uniform(0, 1),
                NAMESYSTEM,
                f"BLOCK* NameSystem.addStoredBlock: {stored_line}",
            )
    return t_done + 3


def _write_failure(block: _Block, c: _Cluster, t: float, nodes: list[str], at: int) -> None:
    rng, b, node = c.rng, block.block_id, nodes[at]
    block.log(
        t,
        XCEIVER,
        f"writeBlock {b} received exception java.io.IOException: Could not read from stream",
    )
    if rng.random() < 0.7:
        block.log(
            t,
            XCEIVER,
            f"Exception in receiveBlock for block {b} "
            "java.io.IOException: Connection reset by peer",
        )
    if rng.random() < 0.6:
        block.log(t, RESPONDER, f"PacketResponder {len(nodes) - 1 - at} for block {b} Interrupted.")
    if at + 1 < len(nodes) and rng.random() < 0.6:
        block.log(
            t, XCEIVER, f"{node}:50010:Exception writing block {b} to mirror {nodes[at + 1]}:50010"
        )


def _reads(block: _Block, c: _Cluster, t: float, nodes: list[str]) -> None:
    rng, b = c.rng, block.block_id
    for _ in range(int(rng.geometric(0.4)) if rng.random() < 0.5 else 0):
        t += rng.exponential(600)
        node, client = nodes[int(rng.integers(len(nodes)))], c.nodes(1)[0]
        block.log(t, XCEIVER, f"{node}:50010 Served block {b} to /{client}")
        if rng.random() < 0.3:
            block.log(
                t, XCEIVER, f"{node}:50010:Got exception while serving {b} to /{client}:", "WARN"
            )
    if rng.random() < 0.15:
        block.log(t + rng.exponential(3600), SCANNER, f"Verification succeeded for {b}")


def _replicate(
    block: _Block, c: _Cluster, t: float, nodes: list[str], size: int, fail: bool
) -> None:
    rng, b = c.rng, block.block_id
    source, target = nodes[0], c.nodes(1)[0]
    block.log(
        t, NAMESYSTEM, f"BLOCK* ask {source}:50010 to replicate {b} to datanode(s) {target}:50010"
    )
    block.log(
        t + 1, DATANODE, f"{source}:50010 Starting thread to transfer block {b} to {target}:50010"
    )
    if fail:
        block.log(
            t + 2,
            DATANODE,
            f"{source}:50010:Failed to transfer {b} to {target}:50010 got "
            "java.io.IOException: Connection reset by peer",
            "WARN",
        )
        if rng.random() < 0.5:
            block.log(t + 300, NAMESYSTEM, f"PendingReplicationMonitor timed out block {b}", "WARN")
        return
    block.log(
        t + 2, XCEIVER, f"Receiving block {b} src: /{source}:{c.port()} dest: /{target}:50010"
    )
    block.log(t + 3, TRANSFER, f"{source}:50010:Transmitted block {b} to /{target}:50010")
    block.log(
        t + 3,
        XCEIVER,
        f"Received block {b} src: /{source}:{c.port()} dest: /{target}:50010 of size {size}",
    )
    block.log(
        t + 4,
        NAMESYSTEM,
        f"BLOCK* NameSystem.addStoredBlock: blockMap updated: "
        f"{target}:50010 is added to {b} size {size}",
    )


def _delete(block: _Block, c: _Cluster, t: float, nodes: list[str], error: bool) -> None:
    rng, b = c.rng, block.block_id
    for node in nodes:
        block.log(
            t, NAMESYSTEM, f"BLOCK* NameSystem.delete: {b} is added to invalidSet of {node}:50010"
        )
    if rng.random() < 0.5:
        for node in nodes:  # the NameNode's order to the DataNode (note the double space)
            block.log(t + 1, NAMESYSTEM, f"BLOCK* ask {node}:50010 to delete  {b}")
    for i, _ in enumerate(nodes):
        at = t + rng.uniform(2, 30)
        if error and i == 0:
            block.log(
                at,
                DATASET,
                f"Unexpected error trying to delete block {b}. BlockInfo not found in volumeMap.",
                "WARN",
            )
            continue
        block.log(
            at,
            DATASET,
            f"Deleting block {b} file /mnt/hadoop/dfs/data/current/"
            f"subdir{int(rng.integers(0, 64))}/{b}",
        )


def _session(c: _Cluster, t0: float, kind: str | None) -> _Block:
    """One block's lines; `kind` is an anomaly kind or None for a normal block."""
    rng = c.rng
    block = _Block(c.block_id())
    replication = int(rng.choice([3, 2, 1], p=[0.88, 0.09, 0.03]))
    nodes = c.nodes(replication)
    size = BLOCK_SIZE if rng.random() < 0.8 else int(rng.integers(1, BLOCK_SIZE))
    if kind == "cut_short":
        block.log(
            t0,
            NAMESYSTEM,
            f"BLOCK* NameSystem.allocateBlock: /user/root/rand/_temporary/"
            f"_task_200811092030_0001_m_000001_0/part-00001. {block.block_id}",
        )
        for node in nodes[: int(rng.integers(0, replication + 1))]:
            block.log(
                t0 + 1,
                XCEIVER,
                f"Receiving block {block.block_id} src: /{node}:{c.port()} dest: /{node}:50010",
            )
        return block
    fail_at = int(rng.integers(0, replication)) if kind == "write_exception" else None
    t = _write(block, c, t0, nodes, size, fail_at, stored=kind != "deleted_before_stored")
    if kind == "responder_not_terminating":
        drop = next(i for i, e in enumerate(block.events) if "terminating" in e[3])
        del block.events[drop]
    if kind == "redundant_add":
        node = nodes[int(rng.integers(replication))]
        block.log(
            t,
            NAMESYSTEM,
            f"BLOCK* NameSystem.addStoredBlock: Redundant addStoredBlock "
            f"request received for {block.block_id} on {node}:50010 size {size}",
        )
    if kind == "deleted_before_stored":
        # the same lines as a normal block, but the delete comes before the replicas are stored
        _delete(block, c, t, nodes, error=False)
        for node in nodes:
            block.log(
                t + 60,
                NAMESYSTEM,
                f"BLOCK* NameSystem.addStoredBlock: blockMap updated: "
                f"{node}:50010 is added to {block.block_id} size {size}",
            )
        return block
    _reads(block, c, t, nodes)
    if kind == "failed_transfer" or rng.random() < 0.04:
        _replicate(block, c, t + rng.exponential(1800), nodes, size, kind == "failed_transfer")
    if kind == "deletion_error" or rng.random() < 0.6:
        _delete(block, c, t + rng.uniform(3600, 30000), nodes, kind == "deletion_error")
    return block


def _line(at: float, pid: int, level: str, component: str, content: str) -> str:
    stamp = START + dt.timedelta(seconds=at)
    return f"{stamp:%y%m%d %H%M%S} {pid} {level} {component}: {content}"


def simulate(n_blocks: int, anomaly_share: float, seed: int) -> tuple[list[str], pd.DataFrame]:
    """The log lines (time-ordered, blocks interleaved) and the labels of `n_blocks` blocks.

    Returns:
        The lines, and a frame `BlockId`, `Label` ("Normal" / "Anomaly") and `Kind` (the kind
        of anomaly, or "normal") in block order. Loghub's label file has the first two.
    """
    rng = np.random.default_rng(seed)
    cluster = _Cluster(rng)
    kinds = list(ANOMALY_KINDS)
    window = 36 * 3600.0  # Loghub's HDFS_v1 spans about 39 hours
    rows, labels = [], []
    for start in np.sort(rng.uniform(0, window, n_blocks)):
        is_anomaly = rng.random() < anomaly_share
        kind = str(rng.choice(kinds, p=list(ANOMALY_KINDS.values()))) if is_anomaly else None
        block = _session(cluster, float(start), kind)
        labels.append((block.block_id, "Anomaly" if is_anomaly else "Normal", kind or "normal"))
        rows += [(at, len(rows), level, comp, text) for at, level, comp, text in block.events]
    rows.sort(key=lambda row: (row[0], row[1]))  # by time; ties keep the order of generation
    pids = rng.integers(1, 10000, len(rows))
    lines = [
        _line(at, int(pid), level, comp, text)
        for (at, _, level, comp, text), pid in zip(rows, pids, strict=True)
    ]
    return lines, pd.DataFrame(labels, columns=["BlockId", "Label", "Kind"])
