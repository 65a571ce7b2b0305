"""What every service does alike: probes, metrics, the model version, and bad input answered
with a 4xx JSON body that names the problem, never a 5xx or an ERROR in the server log."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.service

# each service's main route and a valid body for it
ROUTES = {
    "spam": ("/classify", {"texts": ["See you at lunch?"]}),
    "recommend": ("/recommend", {"user_id": 1, "k": 3}),
    "anomaly": ("/score", {"sessions": [{"block_id": "blk_1", "events": ["E1", "E2"]}]}),
    "traffic": (
        "/analyze",
        {"lines": ['192.0.2.1 - - [11/Mar/2024:10:15:32 +0000] "GET / HTTP/1.1" 200 9']},
    ),
}
PROJECTS = list(ROUTES)


@pytest.mark.parametrize("project", PROJECTS)
def test_probes_and_metrics_answer(services, project) -> None:
    client = services[project].client
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "bentoml_service_request" in metrics.text


@pytest.mark.parametrize("project", PROJECTS)
def test_every_answer_names_the_pinned_champion_version(services, project, repo) -> None:
    root, _ = repo
    pinned = json.loads((root / "services" / "pinned.json").read_text())[project]
    route, body = ROUTES[project]
    answer = services[project].post(route, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == pinned["version"]
    assert pinned["tag"] == f"{pinned['model']}:v{pinned['version']}"


def _raw(service, route: str, content: bytes, content_type: str | None, **headers: str):
    if content_type is not None:
        headers["Content-Type"] = content_type
    return service.client.post(route, content=content, headers=headers)


BAD_BODIES = [
    pytest.param(b"{not json", "application/json", 400, id="malformed-json"),
    pytest.param(b"", "application/json", 400, id="empty-body"),
    pytest.param(b"[]", "application/json", 400, id="array-body"),
    pytest.param(b"{}", "application/json", 400, id="missing-fields"),
    pytest.param(b'{"texts": ["a"]}', "text/plain", 415, id="text-plain"),
    pytest.param(b"a=1", "application/x-www-form-urlencoded", 415, id="form"),
    pytest.param(b"{}", None, 415, id="no-content-type"),
]


@pytest.mark.parametrize("project", PROJECTS)
@pytest.mark.parametrize(("content", "content_type", "status"), BAD_BODIES)
def test_bad_bodies_get_a_4xx_that_says_why(services, project, content, content_type, status):
    route, _ = ROUTES[project]
    answer = _raw(services[project], route, content, content_type)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]


@pytest.mark.parametrize("project", PROJECTS)
def test_a_body_over_the_limit_is_refused_before_parsing(services, project) -> None:
    route, _ = ROUTES[project]
    big = json.dumps({"padding": "x" * 1_100_000}).encode()
    answer = _raw(services[project], route, big, "application/json")
    assert answer.status_code == 413
    assert "limit" in answer.json()["error"]
    # without a Content-Length, the body is counted as it arrives
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
    answer = services[project].client.post(
        route, content=chunks, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413


@pytest.mark.parametrize("project", PROJECTS)
def test_client_errors_are_not_logged_as_server_errors(services, project) -> None:
    route, _ = ROUTES[project]
    for content, content_type in ((b"{not json", "application/json"), (b"{}", "application/json")):
        assert _raw(services[project], route, content, content_type).status_code == 400
    assert services[project].errors_logged() == []


@pytest.mark.parametrize("project", PROJECTS)
def test_every_request_is_in_the_access_log_refused_ones_too(services, project) -> None:
    from projects.core.accesslog import escape

    route, body = ROUTES[project]
    service, agent = services[project], f"access-log-test/{project}"
    headers = {"User-Agent": agent}
    sent = _raw(service, route, json.dumps(body).encode(), "application/json", **headers)
    assert sent.status_code == 200
    assert _raw(service, route, b"{}", "text/plain", **headers).status_code == 415
    assert service.client.get("/no/such/route?q=1", headers=headers).status_code == 404
    access = service.requests_dir.parent / "access"
    wanted = [f'"POST {route} HTTP/1.1" 415 ', '"GET /no/such/route?q=1 HTTP/1.1" 404 ']
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [
            line
            for path in sorted(access.glob("*.log"))
            for line in path.read_text().splitlines()
            if f'"{agent}"' in line
        ]
        if all(any(w in line for line in lines) for w in wanted):
            break
        time.sleep(0.2)
    assert all(any(w in line for line in lines) for w in wanted), lines
    refused = next(line for line in lines if " 415 " in line)
    # refused on its content type before the body was read: no body field, then the time taken
    assert refused.startswith("127.0.0.1 - - [") and f'"{agent}" "-" ' in refused
    assert refused.split()[-1].replace(".", "").isdigit()
    answered = next(line for line in lines if '" 200 ' in line and route in line)
    assert escape(json.dumps(body)) in answered
