"""Who may see and change things on the dashboard: the session cookie, the login, CSRF and origin checks.

- Every visitor gets a signed session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` over HTTPS)
  holding a random session id, whether it logged in, and when it was issued. The signing key comes
  from the login token (so sessions survive a restart and die when the token changes) or, without
  one, from a random key made at start-up.
- With a login required (`seqrun serve` bound beyond loopback, `SEQRUN_DASHBOARD_TOKEN` set), every
  page but the login form needs a logged-in session; the token is compared in constant time.
- Every POST needs the session's CSRF token (an HMAC of the session id) in its `csrf` field, and a
  browser's `Origin` (or, without one, `Referer`) naming this very site; `Sec-Fetch-Site:
  cross-site` is refused outright.
- Without a login, the dashboard answers only requests whose `Host` is a loopback name, so that a
  web page cannot reach it through DNS rebinding.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import urllib.parse
from dataclasses import dataclass

COOKIE = "seqrun_session"
#: how long a login lasts
SESSION_LIFETIME = dt.timedelta(hours=12)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    logged_in: bool
    issued_at: dt.datetime


class Guard:
    """Signs and reads session cookies and checks logins, CSRF tokens and origins."""

    def __init__(self, login_token: str | None, *, require_login: bool) -> None:
        if require_login and not login_token:
            raise ValueError("a dashboard that requires a login needs a login token")
        self.require_login = require_login
        self._token = login_token
        seed = login_token.encode() if login_token else secrets.token_bytes(32)
        self._key = hmac.new(seed, b"seqrun dashboard session v1", hashlib.sha256).digest()

    # --- the cookie ------------------------------------------------------------------------------

    def new_session(self, now: dt.datetime, *, logged_in: bool = False) -> Session:
        return Session(secrets.token_urlsafe(18), logged_in, now)

    def dump(self, session: Session) -> str:
        payload = json.dumps({"sid": session.sid, "in": session.logged_in,
                              "at": int(session.issued_at.timestamp())}, separators=(",", ":")).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self.sign(body)}"

    def load(self, cookie: str | None, now: dt.datetime) -> Session | None:
        """The session a cookie holds; None if absent, forged, malformed or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self.sign(body)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            session = Session(str(data["sid"]), bool(data["in"]),
                              dt.datetime.fromtimestamp(int(data["at"]), dt.timezone.utc))
        except (ValueError, KeyError, TypeError):
            return None
        if not session.issued_at - dt.timedelta(minutes=5) <= now <= session.issued_at + SESSION_LIFETIME:
            return None
        return session

    def sign(self, text: str) -> str:
        """An HMAC of `text` under the session key (URL-safe base64)."""
        return base64.urlsafe_b64encode(hmac.new(self._key, text.encode(), hashlib.sha256).digest()).decode().rstrip("=")

    # --- login and CSRF ----------------------------------------------------------------------------

    def allowed(self, session: Session | None) -> bool:
        return not self.require_login or (session is not None and session.logged_in)

    def token_matches(self, given: str) -> bool:
        if not self._token:
            return False
        return hmac.compare_digest(given.encode(), self._token.encode())

    def csrf_token(self, session: Session) -> str:
        return self.sign(f"csrf:{session.sid}")

    def csrf_ok(self, session: Session | None, given: str | None) -> bool:
        return session is not None and bool(given) and hmac.compare_digest(given or "", self.csrf_token(session))


def same_origin(headers: dict[str, str], scheme: str) -> bool:
    """Whether a POST comes from this site, as far as the browser says (absent headers say nothing)."""
    if headers.get("sec-fetch-site", "") == "cross-site":
        return False
    host = headers.get("host", "")
    own = f"{scheme}://{host}".lower()
    origin = headers.get("origin")
    if origin is not None:
        return origin.lower() == own
    referer = headers.get("referer")
    if referer is not None:
        parts = urllib.parse.urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() == own
    return True


def loopback_host(host_header: str) -> bool:
    """Whether a `Host` header names this machine's loopback (with or without a port)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        name = host[: host.find("]") + 1] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in LOOPBACK_HOSTS
