"""HDFS log lines into sessions of events: the line format, template mining, matching.

Templates are mined with drain3 from the training lines only. The result is a plain list of
templates, which is part of the model. Serving matches new lines against that list the way
Drain does: same token count, and every token equal or a wildcard. A line that matches no
template is the unknown event `E0`, counted and never an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Loghub's HDFS_v1 format: date, time, pid, level, component, then the message
LINE = re.compile(
    r"^(?P<date>\d{6}) (?P<time>\d{6}) (?P<pid>\d+) (?P<level>[A-Z]+) (?P<component>[\w.$]+): "
    r"(?P<content>.*)$"
)
BLOCK = re.compile(r"blk_-?\d+")
UNKNOWN = "E0"
WILDCARD = "<*>"
# Variable parts are masked before mining and matching, in this order. A run of block ids is one
# token, so `ask … to delete blk_1 blk_2 …` is one template however many blocks it names.
MASKS = (
    (re.compile(r"blk_-?\d+(?:\s+blk_-?\d+)*"), "<BLK>"),
    (re.compile(r"/?\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?"), "<IP>"),
    (re.compile(r"(?<![\w.])-?\d+(?![\w.])"), "<NUM>"),
)


def mask(content: str) -> str:
    """The message with block ids, addresses and numbers replaced by placeholders."""
    for pattern, placeholder in MASKS:
        content = pattern.sub(placeholder, content)
    return content


def content_of(line: str) -> str | None:
    """The message part of an HDFS_v1 line, or None if the line is not in that format."""
    found = LINE.match(line.rstrip("\r\n"))
    return found.group("content") if found else None


def blocks_in(content: str) -> list[str]:
    """The distinct block ids a message names, in order."""
    return list(dict.fromkeys(BLOCK.findall(content)))


@dataclass(frozen=True)
class Templates:
    """Event templates; the template at index i is event `E{i + 1}`."""

    templates: tuple[str, ...]
    _by_length: dict[int, list[tuple[int, list[str]]]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        for index, template in enumerate(self.templates):
            tokens = template.split()
            self._by_length.setdefault(len(tokens), []).append((index, tokens))

    @property
    def event_ids(self) -> list[str]:
        return [f"E{i + 1}" for i in range(len(self.templates))]

    def match(self, content: str) -> str:
        """The event id of a message, or `UNKNOWN`; the most specific template wins a tie."""
        tokens = mask(content).split()
        best, best_exact = UNKNOWN, -1
        for index, template in self._by_length.get(len(tokens), []):
            exact = 0
            for want, got in zip(template, tokens, strict=True):
                if want == got:
                    exact += 1
                elif want != WILDCARD:
                    break
            else:
                if exact > best_exact:
                    best, best_exact = f"E{index + 1}", exact
        return best

    def to_json(self) -> str:
        return json.dumps({"templates": list(self.templates)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Templates:
        return cls(tuple(json.loads(text)["templates"]))


def mine(contents: Iterable[str], similarity: float, depth: int) -> Templates:
    """Mine templates from messages with drain3 (Drain; He et al. 2017).

    Args:
        similarity: Drain's similarity threshold for joining a message to a cluster.
        depth: depth of Drain's parse tree.
    """
    from drain3.drain import Drain

    drain = Drain(depth=depth, sim_th=similarity, max_children=100, param_str=WILDCARD)
    for content in contents:
        drain.add_log_message(mask(content))
    clusters = sorted(drain.clusters, key=lambda cluster: cluster.cluster_id)
    return Templates(tuple(cluster.get_template() for cluster in clusters))


@dataclass
class ParseStats:
    """What parsing met: lines, lines not in the format, lines with no block, unknown events."""

    lines: int = 0
    malformed: int = 0
    without_block: int = 0
    unknown: int = 0

    @property
    def parse_rate(self) -> float:
        """Share of well-formed lines that matched a template."""
        parsed = self.lines - self.malformed
        return (parsed - self.unknown) / parsed if parsed else 0.0


def sessions(lines: Iterable[str], templates: Templates) -> tuple[dict[str, list[str]], ParseStats]:
    """Group the lines' events by block, in line order; count what could not be parsed.

    Blank lines are skipped; a line not in the HDFS_v1 format is counted as malformed.
    """
    grouped: dict[str, list[str]] = {}
    stats = ParseStats()
    for line in lines:
        if not line.strip():
            continue  # a blank line is not a log line
        stats.lines += 1
        content = content_of(line)
        if content is None:
            stats.malformed += 1
            continue
        event = templates.match(content)
        stats.unknown += event == UNKNOWN
        blocks = blocks_in(content)
        stats.without_block += not blocks
        for block in blocks:
            grouped.setdefault(block, []).append(event)
    return grouped, stats


def format_events(events: Sequence[str]) -> str:
    """Events as stored in a sessions file: space-separated ids."""
    return " ".join(events)
