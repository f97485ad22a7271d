"""The console's session cookie as a second way to authenticate API calls (beside HTTP
Basic, which is unchanged), and the console's files: real HTTP to a real gatehouse."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.server import API, Gatehouse

SESSION = "/console/session"
CSRF = "X-Gatehouse-CSRF"


@pytest.fixture
def browser_http(gatehouse: Gatehouse) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gatehouse.url, timeout=10) as client:
        yield client


def sign_in(http: httpx.Client, gatehouse: Gatehouse) -> str:
    answer = http.post(
        SESSION, json={"accessKey": gatehouse.access_key, "accessSecret": gatehouse.access_secret}
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["data"]["csrfToken"]
    return token


def test_sign_in_sets_a_strict_http_only_cookie_and_shows_no_secret(
    gatehouse: Gatehouse, browser_http: httpx.Client
) -> None:
    answer = browser_http.post(
        SESSION, json={"accessKey": gatehouse.access_key, "accessSecret": gatehouse.access_secret}
    )
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("gatehouse_session=")
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes  # plain HTTP here; Secure when the request is on TLS
    assert gatehouse.access_secret not in answer.text
    assert gatehouse.access_secret not in cookie
    data = answer.json()["data"]
    assert data["orgId"] == gatehouse.org_id and data["csrfToken"]


def test_a_wrong_secret_gets_no_session_and_no_basic_challenge(
    gatehouse: Gatehouse, browser_http: httpx.Client
) -> None:
    answer = browser_http.post(
        SESSION, json={"accessKey": gatehouse.access_key, "accessSecret": "wrong"}
    )
    assert answer.status_code == 401 and answer.json()["code"] == 99401
    assert "set-cookie" not in answer.headers
    assert "www-authenticate" not in answer.headers  # a browser would pop up its own dialog
    assert browser_http.post(SESSION, content=b"not json").status_code == 400
    assert browser_http.get(SESSION).status_code == 401


def test_api_calls_with_the_cookie_need_the_csrf_token(
    gatehouse: Gatehouse, browser_http: httpx.Client
) -> None:
    token = sign_in(browser_http, gatehouse)
    listed = browser_http.post(f"{API}/products?action=list", headers={CSRF: token})
    assert listed.status_code == 200 and listed.json()["code"] == 0
    for headers in ({}, {CSRF: "forged"}):
        refused = browser_http.post(f"{API}/products?action=list", headers=headers)
        assert refused.status_code == 403 and CSRF.lower() in refused.json()["msg"]
        created = browser_http.post(
            f"{API}/projects?action=create", headers=headers, json={"name": "csrf-probe"}
        )
        assert created.status_code == 403
    names = [p["name"] for p in gatehouse.client()("projects", "list").data]
    assert "csrf-probe" not in names  # nothing of a refused call was stored
    assert browser_http.get(SESSION).json()["data"]["csrfToken"] == token  # a reloaded page


def test_the_live_stream_opens_with_the_cookie(
    gatehouse: Gatehouse, browser_http: httpx.Client
) -> None:
    sign_in(browser_http, gatehouse)
    with browser_http.stream("GET", f"{API}/stream") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")


def test_signing_out_ends_the_session(gatehouse: Gatehouse, browser_http: httpx.Client) -> None:
    token = sign_in(browser_http, gatehouse)
    cookie = browser_http.cookies["gatehouse_session"]
    assert browser_http.delete(SESSION).status_code == 403  # not without the token
    assert browser_http.get(SESSION).status_code == 200
    out = browser_http.delete(SESSION, headers={CSRF: token})
    assert out.status_code == 200
    assert "gatehouse_session=" in out.headers["set-cookie"]  # cleared
    # The old cookie, replayed, names no session any more.
    with httpx.Client(base_url=gatehouse.url, cookies={"gatehouse_session": cookie}) as replay:
        ended = replay.post(f"{API}/products?action=list", headers={CSRF: token})
        assert ended.status_code == 401 and "sign in again" in ended.json()["msg"]
        assert "www-authenticate" not in ended.headers
        assert replay.get(f"{API}/stream").status_code == 401


def test_basic_auth_is_unchanged(gatehouse: Gatehouse, browser_http: httpx.Client) -> None:
    bare = browser_http.post(f"{API}/products?action=list")
    assert bare.status_code == 401 and bare.headers["www-authenticate"].startswith("Basic")
    basic = browser_http.post(
        f"{API}/products?action=list", auth=(gatehouse.access_key, gatehouse.access_secret)
    )
    assert basic.status_code == 200  # no CSRF token asked of Basic callers
    wrong = browser_http.post(f"{API}/products?action=list", auth=(gatehouse.access_key, "x"))
    assert wrong.status_code == 401 and "www-authenticate" in wrong.headers


def test_the_console_is_served_with_a_strict_content_policy(
    gatehouse: Gatehouse, browser_http: httpx.Client
) -> None:
    moved = browser_http.get("/console")
    assert moved.status_code in (307, 308) and moved.headers["location"].endswith("/console/")
    page = browser_http.get("/console/")
    assert page.status_code == 200 and '<script type="module" src="js/main.js">' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    script = browser_http.get("/console/js/main.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]


def test_the_connection_facts_name_the_mqtt_ports(gatehouse: Gatehouse) -> None:
    facts = gatehouse.client()("connection", "get").data
    assert facts == {"mqttPort": gatehouse.mqtt_port, "mqttsPort": gatehouse.mqtts_port}
