"""Behaviour of the default spam model, trained once on the real training split."""

from __future__ import annotations

import pandas as pd
import pytest

from projects.core.params import load_params
from projects.spam.config import SpamParams
from projects.spam.model import SpamScorer, choose_threshold, spam_probability, train
from projects.spam.prepare import split

CLEAR_SPAM = [
    "WINNER!! You have won a £1000 cash prize. Call 09061701461 now to claim. T&C apply",
    "FREE entry into our weekly competition. Text WIN to 80086 to receive your prize",
    "URGENT! Your mobile number has been awarded a 2000 bonus. Call 09050000327 to claim",
]
CLEAR_HAM = [
    "Hey, are we still meeting for lunch tomorrow?",
    "I'll be home late tonight, don't wait up for dinner",
    "Can you pick up some milk on your way back? Thanks",
]


@pytest.fixture(scope="module")
def model(spam_messages: pd.DataFrame):
    params = load_params("spam", SpamParams)
    train_split, _ = split(spam_messages, params.prepare.test_size, params.prepare.seed)
    return train(train_split, params.train, seed=params.prepare.seed)


def _predict(model, texts: list[str]) -> list[str]:
    return list(model.predict(pd.DataFrame({"text": texts})))


def test_clear_spam_is_spam_and_clear_ham_is_ham(model) -> None:
    assert _predict(model, CLEAR_SPAM) == ["spam"] * len(CLEAR_SPAM)
    assert _predict(model, CLEAR_HAM) == ["ham"] * len(CLEAR_HAM)


@pytest.mark.parametrize(
    "change",
    [str.upper, str.lower, lambda t: "  " + t.replace(" ", "   ") + "\n"],
    ids=["upper", "lower", "extra-whitespace"],
)
def test_label_is_invariant_to_case_and_whitespace(model, change) -> None:
    texts = CLEAR_SPAM + CLEAR_HAM
    assert _predict(model, [change(t) for t in texts]) == _predict(model, texts)


def test_a_synonym_keeps_the_label(model) -> None:
    spam = "FREE entry into our weekly competition. Text WIN to 80086 to receive your prize"
    assert _predict(model, [spam.replace("FREE", "COMPLIMENTARY")]) == ["spam"]


def test_probabilities_are_probabilities_and_follow_the_threshold(model) -> None:
    texts = pd.DataFrame({"text": CLEAR_SPAM + CLEAR_HAM})
    probability = spam_probability(model, texts)
    assert ((probability >= 0) & (probability <= 1)).all()
    assert list(model.predict(texts)) == [
        "spam" if p >= model.threshold else "ham" for p in probability
    ]
    assert 0.5 <= model.threshold < 1


@pytest.mark.parametrize(
    ("scores", "is_spam", "budget", "blocked"),
    [
        ([0.1, 0.2, 0.95, 0.9, 0.99], [0, 0, 0, 1, 1], 0.0, 0),
        ([0.1, 0.2, 0.95, 0.9, 0.99], [0, 0, 0, 1, 1], 0.34, 1),
        ([0.1, 0.2, 0.3], [0, 0, 0], 1.0, 0),  # never below 0.5
    ],
)
def test_threshold_blocks_at_most_the_budget_of_ham(scores, is_spam, budget, blocked) -> None:
    import numpy as np

    scores, is_spam = np.array(scores), np.array(is_spam, dtype=bool)
    threshold = choose_threshold(scores, is_spam, budget)
    assert threshold >= 0.5
    assert int((scores[~is_spam] >= threshold).sum()) == blocked


def test_training_is_deterministic_for_a_seed(spam_messages: pd.DataFrame, model) -> None:
    params = load_params("spam", SpamParams)
    train_split, test_split = split(spam_messages, params.prepare.test_size, params.prepare.seed)
    again = train(train_split, params.train, seed=params.prepare.seed)
    texts = test_split[["text"]]
    assert (spam_probability(again, texts) == spam_probability(model, texts)).all()
    assert again.threshold == model.threshold


def test_the_serving_scorer_agrees_with_the_model(spam_messages: pd.DataFrame, model) -> None:
    texts = spam_messages[["text"]].iloc[:500]
    scorer = SpamScorer(model)
    probability = scorer.probability(list(texts["text"]))
    assert probability == pytest.approx(spam_probability(model, texts), abs=1e-12)
    labels = ["spam" if s else "ham" for s in scorer.is_spam(probability)]
    assert labels == list(model.predict(texts))


def test_explanations_name_the_spam_tokens_and_split_the_margin(model) -> None:
    import numpy as np

    scorer = SpamScorer(model)
    text = CLEAR_SPAM[0]
    weights = scorer.explain(text, top=100)
    assert {w.token for w in weights} <= set(text.split())
    assert weights[0].weight > 0  # the strongest token pushes toward spam
    assert any(w.token in {"prize.", "WINNER!!", "cash", "09061701461"} for w in weights[:5])
    # every feature lies in some token, so the weights add up to the margin less its intercept
    logit = np.log(1 / scorer.probability([text])[0] - 1)  # Platt: P = 1 / (1 + e^(a m + b))
    margin = (logit - scorer.b) / scorer.a
    assert sum(w.weight for w in weights) == pytest.approx(margin - scorer.intercept, abs=1e-4)
