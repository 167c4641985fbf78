"""Who may see and change things: sessions, the login, CSRF tokens and cross-site POSTs change nothing."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from starlette.testclient import TestClient

from runner.server.dashboard import create_dashboard
from runner.server.dashboard.security import COOKIE, Guard, loopback_host, same_origin
from runner.store import Enrollment
from runner.store import dashboard as store

from .conftest import NOW, TOKEN

BASE = "http://127.0.0.1:8000"


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _replied() -> int:
    rows, _ = store.attention()
    return next(r.enrollment_id for r in rows if r.reason == "replied")


def _snapshot() -> list[tuple]:
    return list(Enrollment.select(Enrollment.id, Enrollment.state, Enrollment.paused_reason, Enrollment.updated_at)
                .order_by(Enrollment.id).tuples()) + list(store.HandledMark.select().tuples())


@pytest.fixture
def client(dashboard) -> TestClient:
    return TestClient(dashboard, base_url=BASE)


@pytest.fixture
def exposed(project) -> TestClient:
    app = create_dashboard(project, clock=lambda: NOW, login_token=TOKEN, require_login=True)
    return TestClient(app, base_url="http://192.0.2.10:8000")


def test_loopback_pages_need_no_login_and_set_a_strict_httponly_cookie(client):
    response = client.get("/")
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert response.headers["x-frame-options"] == "DENY"


def test_loopback_refuses_another_host_name(client):
    """A page elsewhere cannot reach an unguarded dashboard through DNS rebinding."""
    response = client.get("/", headers={"host": "attacker.example:8000"})
    assert response.status_code == 421
    assert response.text == "This dashboard answers only on 127.0.0.1 or localhost."


def test_a_post_without_a_csrf_token_changes_nothing(client):
    enrollment = _replied()
    client.get("/")
    before = _snapshot()
    response = client.post(f"/leads/{enrollment}/handled", data={}, headers={"origin": BASE})
    assert response.status_code == 403
    assert response.text == "Refused: the form's CSRF token is missing or wrong; reload the page and try again."
    assert _snapshot() == before
    assert store.needs_human(enrollment)


def test_a_post_with_a_wrong_csrf_token_changes_nothing(client):
    enrollment = _replied()
    token = _csrf(client.get(f"/leads/{enrollment}").text)
    before = _snapshot()
    response = client.post(f"/leads/{enrollment}/pause", data={"csrf": token[:-2] + "xx"}, headers={"origin": BASE})
    assert response.status_code == 403
    assert _snapshot() == before


def test_a_csrf_token_of_another_session_changes_nothing(client, dashboard):
    enrollment = _replied()
    other = TestClient(dashboard, base_url=BASE)
    token = _csrf(other.get(f"/leads/{enrollment}").text)
    client.get("/")
    before = _snapshot()
    response = client.post(f"/leads/{enrollment}/handled", data={"csrf": token}, headers={"origin": BASE})
    assert response.status_code == 403
    assert _snapshot() == before


@pytest.mark.parametrize("headers", [
    {"origin": "https://evil.example"},
    {"origin": "http://127.0.0.1:9999"},
    {"referer": "https://evil.example/page"},
    {"sec-fetch-site": "cross-site"},
])
def test_a_cross_site_post_changes_nothing_even_with_a_valid_token(client, headers):
    enrollment = _replied()
    token = _csrf(client.get(f"/leads/{enrollment}").text)
    before = _snapshot()
    response = client.post(f"/leads/{enrollment}/handled", data={"csrf": token}, headers=headers)
    assert response.status_code == 403
    assert response.text == "Refused: this request came from another site."
    assert _snapshot() == before


def test_a_same_site_post_with_the_token_marks_the_lead_handled(client):
    enrollment = _replied()
    page = client.get(f"/leads/{enrollment}")
    response = client.post(f"/leads/{enrollment}/handled", data={"csrf": _csrf(page.text)},
                           headers={"origin": BASE}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/leads/{enrollment}"
    assert not store.needs_human(enrollment)
    assert store.handled_at(enrollment) == NOW
    shown = client.get(f"/leads/{enrollment}").text
    assert "Marked handled: the lead leaves “Needs a human” until something new happens to it." in shown
    assert f'href="/leads/{enrollment}"' not in client.get("/attention").text


def test_an_exposed_dashboard_sends_strangers_to_the_login(exposed):
    response = exposed.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert exposed.get("/?fragment=1").status_code == 401
    assert exposed.get("/webhooks", follow_redirects=False).status_code == 303


def test_an_unauthenticated_post_changes_nothing(exposed):
    enrollment = _replied()
    token = _csrf(exposed.get("/login").text)  # a session, not logged in
    before = _snapshot()
    response = exposed.post(f"/leads/{enrollment}/handled", data={"csrf": token},
                            headers={"origin": "http://192.0.2.10:8000"})
    assert response.status_code == 401
    assert response.text == "Log in first."
    assert _snapshot() == before


def test_a_wrong_token_does_not_log_in(exposed):
    token = _csrf(exposed.get("/login").text)
    response = exposed.post("/login", data={"csrf": token, "token": "guess"}, headers={"origin": "http://192.0.2.10:8000"})
    assert response.status_code == 401
    assert "That is not the dashboard token." in response.text
    assert exposed.get("/", follow_redirects=False).status_code == 303


def test_the_right_token_logs_in_and_then_buttons_work(exposed):
    enrollment = _replied()
    token = _csrf(exposed.get("/login").text)
    response = exposed.post("/login", data={"csrf": token, "token": TOKEN},
                            headers={"origin": "http://192.0.2.10:8000"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    page = exposed.get(f"/leads/{enrollment}")
    assert page.status_code == 200
    new_token = _csrf(page.text)
    assert new_token != token  # the session id changed at login
    response = exposed.post(f"/leads/{enrollment}/handled", data={"csrf": new_token},
                            headers={"origin": "http://192.0.2.10:8000"}, follow_redirects=False)
    assert response.status_code == 303
    assert not store.needs_human(enrollment)


def test_a_forged_or_expired_cookie_is_no_session():
    guard = Guard(TOKEN, require_login=True)
    session = guard.new_session(NOW, logged_in=True)
    cookie = guard.dump(session)
    assert guard.load(cookie, NOW) == session
    body, signature = cookie.split(".")
    forged = guard.dump(guard.new_session(NOW, logged_in=True)).split(".")[0] + "." + signature
    assert guard.load(forged, NOW) is None
    assert guard.load(cookie, NOW + dt.timedelta(hours=12, minutes=1)) is None
    assert Guard("another token", require_login=True).load(cookie, NOW) is None
    assert not guard.token_matches("correct horse battery stapl")


def test_origin_and_host_rules():
    assert same_origin({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"}, "http")
    assert not same_origin({"host": "127.0.0.1:8000", "origin": "null"}, "http")
    assert same_origin({"host": "127.0.0.1:8000"}, "http")  # no browser headers: the CSRF token decides
    assert loopback_host("localhost:8000") and loopback_host("[::1]:8000") and loopback_host("127.0.0.1")
    assert not loopback_host("127.0.0.1.evil.example") and not loopback_host("10.0.0.1:8000")
