"""Behaviour of the client-level traffic models on hand-made request frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from projects.traffic.clients import (
    FEATURE_NAMES,
    ClientModel,
    SupervisedClientModel,
    Transitions,
    client_features,
    first_flagged,
    first_requests,
    how_early,
    sessions,
)

T0 = 1_700_000_000.0
PAGES = ("/", "/products", "/products/{}", "/api/products/{}", "/cart", "/search", "/about")
ASSETS = ("/static/app.css", "/static/app.js", "/static/logo.png")


def _request(ip: str, agent: str, time: float, path: str, **fields: object) -> dict[str, object]:
    return {
        "line": 0,
        "client_ip": ip,
        "user": "-",
        "time": float(time),
        "method": "GET",
        "path": path,
        "query": "",
        "protocol": "HTTP/1.1",
        "status": 200,
        "bytes": 1200,
        "referrer": "https://shop.example/",
        "user_agent": agent,
        "body": "",
    } | fields


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).sort_values("time", kind="stable").reset_index(drop=True)
    frame["line"] = np.arange(1, len(frame) + 1)
    return frame


def _human(rng: np.random.Generator, i: int) -> list[dict[str, object]]:
    ip, agent, t = f"10.0.{i // 200}.{i % 200}", f"Mozilla/5.0 (human {i % 5})", T0
    t += rng.uniform(0, 3600)
    rows = []
    for _ in range(int(rng.integers(3, 30))):
        path = PAGES[rng.integers(len(PAGES))].format(rng.integers(1, 5000))
        rows.append(_request(ip, agent, t, path, status=404 if rng.random() < 0.03 else 200))
        if rng.random() < 0.5:
            rows += [_request(ip, agent, t + 1, asset, bytes=30_000) for asset in ASSETS]
        t += rng.exponential(20.0) + 1
    return rows


def _dashboard(i: int, polls: int, start: float = T0) -> list[dict[str, object]]:
    return [
        _request(f"10.9.0.{i}", "grafana/10.2", start + 5 * k, "/api/metrics", referrer="-")
        for k in range(polls)
    ]


def _scraper(ip: str = "203.0.113.7") -> list[dict[str, object]]:
    return [
        _request(ip, "python-requests/2.31", T0 + 2 * k, f"/api/products/{k + 1}", referrer="-")
        for k in range(60)
    ]


def _stuffing(ip: str = "198.51.100.9") -> list[dict[str, object]]:
    return [
        _request(
            ip, "curl/8.4", T0 + 3 * k, "/login", method="POST", status=401,
            body=f"username=user{k}%40mail.example&password=hunter{k}",
        )
        for k in range(40)
    ]  # fmt: skip


def _normal(seed: int, humans: int, dashboards: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [r for i in range(humans) for r in _human(rng, i)]
    rows += [r for i in range(dashboards) for r in _dashboard(i, int(rng.integers(30, 300)))]
    return _frame(rows)


@pytest.fixture(scope="module")
def model() -> ClientModel:
    normal = _normal(seed=1, humans=300, dashboards=20)
    validation = _normal(seed=2, humans=200, dashboards=10)
    return ClientModel().fit(
        normal, np.zeros(len(normal)), validation=(validation, np.zeros(len(validation)))
    )


def _by_client(table: pd.DataFrame, ip: str) -> pd.Series:
    return table[table.client_ip == ip].iloc[0]


# --- sessions ---------------------------------------------------------------------------------


def test_sessions_split_after_30_minutes_idle_and_by_address_and_agent() -> None:
    a, b = ("10.0.0.1", "agent-a"), ("10.0.0.1", "agent-b")
    frame = _frame(
        [
            _request(*a, T0, "/"),
            _request(*a, T0 + 60, "/cart"),
            _request(*a, T0 + 60 + 1800, "/cart"),  # exactly 30 minutes: the same session
            _request(*a, T0 + 60 + 1800 + 1801, "/"),  # more than 30 minutes: a new one
            _request(*b, T0 + 30, "/"),  # same address, other agent: another client
            _request("10.0.0.2", "agent-a", T0 + 30, "/"),  # same agent, other address
        ]
    )
    keys = zip(frame.client_ip, frame.user_agent, frame.time, strict=True)
    by_row = dict(zip(keys, sessions(frame), strict=True))
    first = by_row[(*a, T0)]
    assert by_row[(*a, T0 + 60)] == first
    assert by_row[(*a, T0 + 1860)] == first
    others = {
        by_row[(*a, T0 + 3661)],
        by_row[(*b, T0 + 30)],
        by_row[("10.0.0.2", "agent-a", T0 + 30)],
    }
    assert len(others) == 3 and first not in others


def test_session_ids_do_not_depend_on_row_order() -> None:
    frame = _normal(seed=3, humans=30, dashboards=2)
    shuffled = frame.sample(frac=1.0, random_state=0)
    key = ["client_ip", "user_agent", "time", "path"]
    assert sessions(frame).max() == sessions(shuffled).max()
    left = frame.assign(s=sessions(frame)).groupby("s")[key].apply(lambda g: g.to_numpy().tolist())
    right = (
        shuffled.assign(s=sessions(shuffled))
        .groupby("s")[key]
        .apply(lambda g: sorted(g.to_numpy().tolist()))
    )
    assert sorted(map(sorted, left)) == sorted(right)


def test_first_requests_keeps_the_first_n_of_each_session() -> None:
    frame = _frame(_scraper() + _dashboard(1, 10))
    keep = first_requests(frame, 5)
    assert keep.sum() == 10
    assert sorted(frame[keep & (frame.client_ip == "203.0.113.7")].path) == sorted(
        f"/api/products/{k}" for k in range(1, 6)
    )


# --- features ---------------------------------------------------------------------------------


def test_a_scraper_walking_ids_has_a_high_sequential_share_and_a_human_a_low_one() -> None:
    rng = np.random.default_rng(0)
    frame = _frame(_scraper() + _human(rng, 1))
    table = client_features(frame, np.zeros(len(frame)))
    assert _by_client(table, "203.0.113.7").sequential_ids > 0.9
    assert _by_client(table, "10.0.0.1").sequential_ids < 0.2
    assert _by_client(table, "203.0.113.7").static_share == 0


def test_a_stuffing_client_tries_many_user_names_and_gets_401s() -> None:
    rng = np.random.default_rng(0)
    frame = _frame(_stuffing() + _human(rng, 1))
    table = client_features(frame, np.zeros(len(frame)))
    stuffing, human = _by_client(table, "198.51.100.9"), _by_client(table, "10.0.0.1")
    assert np.expm1(stuffing.login_users) == pytest.approx(40)
    assert stuffing.status_401 > 0.9 and stuffing.login_failures > 0.9
    assert human.login_users == 0 and human.status_401 == 0


def test_a_dashboard_polling_every_5_seconds_has_regular_timing() -> None:
    frame = _frame(_dashboard(1, 100))
    row = client_features(frame, np.zeros(len(frame))).iloc[0]
    assert row.timing_cv == pytest.approx(0.0)
    assert np.exp(row.rate) == pytest.approx(100 / (495 + 60))


def test_request_scores_are_summarised_per_session() -> None:
    frame = _frame(
        [_request("10.0.0.1", "app", T0 + k, f"/api/products/{k}", referrer="-") for k in range(10)]
    )
    scores = np.r_[np.zeros(9), 5.0]
    row = client_features(frame, scores, request_threshold=1.0).iloc[0]
    assert row.score_max == pytest.approx(np.log1p(5.0))
    assert row.score_mean == pytest.approx(np.log1p(0.5))
    assert row.score_over == pytest.approx(1 / (10 + 3))


def test_a_poller_repeating_one_odd_request_counts_it_once() -> None:
    frame = _frame(_dashboard(1, 50))
    row = client_features(frame, np.full(50, 5.0), request_threshold=1.0).iloc[0]
    assert row.score_over == pytest.approx(1 / (1 + 3))


def test_a_poller_cycling_through_unseen_panels_pays_for_each_step_once() -> None:
    endpoints = np.array(["GET /", "GET /products", "GET /", "GET /products"])
    model = Transitions().fit(endpoints, np.array([0, 2]))
    panels = ["/api/stats/a", "/api/stats/b", "/api/stats/c"]
    poller = [
        _request("10.9.0.1", "grafana/10.2", T0 + 5 * k, panels[k % 3], referrer="-")
        for k in range(300)
    ]
    walker = [
        _request("10.9.0.2", "grafana/10.2", T0 + 5 * k, f"/api/stats/s{k}x", referrer="-")
        for k in range(300)
    ]
    table = client_features(_frame(poller + walker), np.zeros(600), transitions=model)
    by_ip = table.set_index("client_ip")["transition_nll"]
    # the same three unseen steps, 300 times, against 300 different ones
    assert by_ip["10.9.0.1"] < 0.1 < 3.0 < by_ip["10.9.0.2"]


def test_a_crawler_naming_itself_is_a_declared_bot_and_a_script_reading_robots_is_not() -> None:
    agents = {
        "10.1.0.1": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "10.1.0.2": "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
        "10.1.0.3": "python-requests/2.31.0",
        "10.1.0.4": "Scrapy/2.11.0 (+https://scrapy.org)",
        "10.1.0.5": "Mozilla/5.0 (Linux; Android 13; CUBOT X30) Chrome/120.0 Mobile Safari/537.36",
    }
    frame = _frame([_request(ip, agent, T0, "/robots.txt") for ip, agent in agents.items()])
    table = client_features(frame, np.zeros(len(frame))).set_index("client_ip")
    assert table["declared_bot"].to_dict() == {
        "10.1.0.1": 1.0, "10.1.0.2": 1.0, "10.1.0.3": 0.0, "10.1.0.4": 0.0, "10.1.0.5": 0.0,
    }  # fmt: skip
    assert (table["robots"] == 1.0).all()


def test_features_refuse_scores_of_another_length() -> None:
    frame = _frame(_dashboard(1, 10))
    with pytest.raises(ValueError, match="9 request scores for 10 requests"):
        client_features(frame, np.zeros(9))


def test_an_empty_frame_has_no_sessions() -> None:
    empty = _frame(_dashboard(1, 1)).iloc[:0]
    assert len(client_features(empty, np.zeros(0))) == 0
    assert len(sessions(empty)) == 0


def test_unseen_endpoints_and_transitions_are_unlikely() -> None:
    endpoints = np.array(["GET /", "GET /products", "GET /", "GET /products"])
    model = Transitions(alpha=0.1).fit(endpoints, np.array([0, 2]))
    known = model.nll(np.array(["GET /", "GET /products"]), np.array([0]))
    unseen = model.nll(np.array(["GET /", "GET /.env"]), np.array([0]))
    assert known[1] < 0.5 and unseen[1] > 3.0


# --- the fitted model -------------------------------------------------------------------------


def test_a_polling_dashboard_is_not_flagged_but_a_scraper_and_stuffing_are(model) -> None:
    frame = _frame(_dashboard(99, 600, start=T0 + 7200) + _scraper() + _stuffing())
    verdicts = model.verdicts(frame, np.zeros(len(frame))).set_index("client_ip")
    assert not verdicts.loc["10.9.0.99", "flagged"]
    assert verdicts.loc["203.0.113.7", "flagged"]
    assert verdicts.loc["198.51.100.9", "flagged"]
    assert any("sequential_ids" in r for r in verdicts.loc["203.0.113.7", "reasons"])
    assert any("login" in r or "401" in r for r in verdicts.loc["198.51.100.9", "reasons"])


def test_most_held_out_normal_sessions_are_not_flagged(model) -> None:
    normal = _normal(seed=4, humans=200, dashboards=10)
    assert model.flagged(model.features(normal, np.zeros(len(normal)))).mean() <= 0.05


def test_the_beginnings_of_normal_sessions_are_not_flagged_early(model) -> None:
    normal = _normal(seed=7, humans=150, dashboards=8)
    for k in (1, 3, 10):
        early = model.verdicts(normal, np.zeros(len(normal)), first=k)
        assert early.flagged.mean() <= 0.05, k


def test_calibrate_sets_the_threshold_at_the_target_rate(model, tmp_path) -> None:
    model.save(tmp_path / "clients.npz")
    tuned = ClientModel.load(tmp_path / "clients.npz")
    tuned.fpr = 0.1
    normal = _normal(seed=8, humans=200, dashboards=10)
    table = tuned.features(normal, np.zeros(len(normal)))
    share = tuned.calibrate(table).flagged(table).mean()
    assert 0.05 <= share <= 0.1
    # the early threshold has a rate of its own, and the full one stays
    early = tuned.features(normal, np.zeros(len(normal)), first=3)
    tuned.early_fpr = 0.01
    strict = tuned.calibrate(early, early=True).early_threshold_
    tuned.early_fpr = 0.2
    share_early = tuned.calibrate(early, early=True).flagged(early, early=True).mean()
    assert 0 < share_early <= 0.2
    assert tuned.early_threshold_ < strict
    assert tuned.flagged(table).mean() == share


def test_the_early_rate_defaults_to_the_full_one_and_is_saved(model, tmp_path) -> None:
    assert ClientModel(fpr=0.003).early_fpr == 0.003
    model.save(tmp_path / "clients.npz")
    assert ClientModel.load(tmp_path / "clients.npz").early_fpr == model.early_fpr


def test_a_scraper_is_caught_within_its_first_20_requests(model) -> None:
    frame = _frame(_scraper() + _stuffing())
    first = first_flagged(model, frame, np.zeros(len(frame)), ks=range(1, 21))
    assert np.all(first <= 20)
    summary = how_early(first, ["scraper", "stuffing"])
    assert summary.loc["scraper", "within_20"] == 1.0


def test_save_and_load_give_identical_scores_and_reasons(model, tmp_path) -> None:
    frame = _frame(_scraper() + _stuffing() + _dashboard(1, 50))
    path = tmp_path / "clients.npz"
    model.save(path)
    loaded = ClientModel.load(path)
    table = model.features(frame, np.zeros(len(frame)))
    assert np.array_equal(
        model.score(table), loaded.score(loaded.features(frame, np.zeros(len(frame))))
    )
    assert loaded.threshold_ == model.threshold_
    assert model.explain(table) == loaded.explain(table)


def test_a_stray_normal_session_does_not_vouch_for_sessions_less_odd_than_itself() -> None:
    normal = _normal(seed=5, humans=120, dashboards=6)
    stray_ip = normal.client_ip.iloc[0]
    stray = (normal.client_ip == stray_ip).to_numpy()
    # one person every one of whose requests scored high (routes no other client called)
    scores = np.where(stray, 50.0, 0.0)
    model = ClientModel().fit(normal, scores)
    # the same visit from another address, every request scoring high but less so
    visit = normal[stray].assign(client_ip="192.0.2.77").reset_index(drop=True)
    table = model.features(visit, np.full(len(visit), 20.0))
    assert model.flagged(table).all()
    assert len(model.reference_) < normal.groupby(["client_ip", "user_agent"]).ngroups


def test_one_normal_client_is_its_own_reference() -> None:
    normal = _frame(_dashboard(1, 100))
    model = ClientModel().fit(normal, np.zeros(len(normal)))
    assert len(model.reference_) == 1
    table = model.features(_frame(_scraper()), np.zeros(60))
    assert np.isfinite(model.score(table)).all()


def test_fitting_is_deterministic() -> None:
    normal = _normal(seed=5, humans=80, dashboards=5)
    frame = _frame(_scraper() + _dashboard(1, 50))
    fits = [ClientModel().fit(normal, np.zeros(len(normal))) for _ in range(2)]
    scores = [m.score(m.features(frame, np.zeros(len(frame)))) for m in fits]
    assert np.array_equal(*scores) and fits[0].threshold_ == fits[1].threshold_


def test_the_supervised_variant_separates_labelled_sessions_and_round_trips(
    model, tmp_path
) -> None:
    normal = _normal(seed=6, humans=100, dashboards=5)
    abuse = _frame(
        [r for i in range(10) for r in _scraper(f"203.0.113.{i}")]
        + [r for i in range(10) for r in _stuffing(f"198.51.100.{i}")]
    )
    table = pd.concat(
        [model.features(normal, np.zeros(len(normal))), model.features(abuse, np.zeros(len(abuse)))]
    )
    is_abuse = np.r_[np.zeros(len(table) - 20), np.ones(20)]
    supervised = SupervisedClientModel().fit(table, is_abuse)
    supervised.calibrate(table[is_abuse == 0])
    flagged = supervised.score(table) >= supervised.threshold_
    assert flagged[is_abuse == 1].all() and flagged[is_abuse == 0].mean() <= 0.02
    supervised.save(tmp_path / "supervised.npz")
    loaded = SupervisedClientModel.load(tmp_path / "supervised.npz")
    assert np.array_equal(loaded.score(table), supervised.score(table))
    assert set(FEATURE_NAMES) >= {r.feature for rs in supervised.explain(table) for r in rs}
