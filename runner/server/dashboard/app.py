"""The dashboard's Starlette app: pages, the lead buttons, login and static files.

`create_dashboard(project, clock=..., deliveries=..., login_token=..., require_login=...)` returns an
ASGI app that `seqrun serve` mounts at `/`. Pages are rendered on the server (Jinja2); a page asked
with `?fragment=1` returns only its content, which `static/dashboard.js` fetches every few seconds.
Security (sessions, login, CSRF, origins, loopback `Host`) is in security.py.
"""
from __future__ import annotations

import datetime as dt
import hmac
import pathlib
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.server.dashboard import actions, views
from runner.server.dashboard.security import COOKIE, Guard, Session, loopback_host, same_origin
from runner.server.dashboard.views import Project

HERE = pathlib.Path(__file__).parent
REFRESH_SECONDS = 5
FLASH = "seqrun_flash"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Clock = Callable[[], dt.datetime]
Handler = Callable[[Request, Session], Awaitable[Response]]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    env.filters["span"] = _span
    return env


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _ago(value: dt.datetime | None, now: dt.datetime) -> str:
    if value is None:
        return "never"
    if value > now:
        return "in the future"
    span = _span(now - value)
    return "just now" if span == "under 1 min" else f"{span} ago"


def _span(value: dt.timedelta) -> str:
    """A length of time as the dashboard shows it, in its largest whole unit: "3 days", "2 h", "7 min"."""
    seconds = value.total_seconds()
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
    return "under 1 min"


def create_dashboard(project: Project, *, clock: Clock, deliveries: Any = None, login_token: str | None = None,
                     require_login: bool = False) -> Starlette:
    """The dashboard as an ASGI app. `deliveries` is the webhook delivery log of `seqrun serve`
    (runner.server.deliveries), or None when there is none."""
    guard = Guard(login_token, require_login=require_login)
    env = _environment()

    def render(request: Request, session: Session, template: str, **context: Any) -> HTMLResponse:
        fragment = request.query_params.get("fragment") == "1"
        page = env.get_template(template)
        html = page.render(request=request, csrf=guard.csrf_token(session), fragment=fragment,
                           login=guard.require_login, now=clock(), refresh=REFRESH_SECONDS,
                           root=request.scope.get("root_path", ""), flash=_flash(request), **context)
        response = HTMLResponse(html)
        if request.cookies.get(FLASH):
            response.delete_cookie(FLASH, path="/")
        return response

    def _flash(request: Request) -> str:
        raw = request.cookies.get(FLASH)
        if not raw:
            return ""
        text, _, signature = raw.rpartition(".")
        return urllib.parse.unquote(text) if hmac.compare_digest(signature, guard.sign(f"flash:{text}")) else ""

    def guarded(handler: Handler, *, post: bool = False, open_page: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            now = clock()
            if not guard.require_login and not loopback_host(request.headers.get("host", "")):
                return PlainTextResponse("This dashboard answers only on 127.0.0.1 or localhost.", status_code=421)
            session = guard.load(request.cookies.get(COOKIE), now)
            fresh = session is None
            if session is None:
                session = guard.new_session(now)
            if post:
                form = await _form(request)
                if not same_origin(dict(request.headers), request.url.scheme):
                    return PlainTextResponse("Refused: this request came from another site.", status_code=403)
                if not guard.csrf_ok(None if fresh else session, form.get("csrf")):
                    return PlainTextResponse("Refused: the form's CSRF token is missing or wrong; reload the page "
                                             "and try again.", status_code=403)
                request.state.form = form
            if not open_page and not guard.allowed(session):
                if post or request.query_params.get("fragment") == "1":
                    return PlainTextResponse("Log in first.", status_code=401)
                return _with_session(RedirectResponse(f"{request.scope.get('root_path', '')}/login", status_code=303),
                                     guard, session, request, fresh)
            response = await handler(request, session)
            return _with_session(response, guard, session, request, fresh)
        return endpoint

    async def overview(request: Request, session: Session) -> Response:
        data = await run_in_threadpool(views.overview, project, clock())
        return render(request, session, "overview.html", page="overview", **data)

    async def attention(request: Request, session: Session) -> Response:
        data = await run_in_threadpool(views.attention_page)
        return render(request, session, "attention.html", page="attention", **data)

    async def lead(request: Request, session: Session) -> Response:
        data = await run_in_threadpool(views.lead_page, _int(request.path_params["enrollment"]))
        if data is None:
            return PlainTextResponse("No such lead.", status_code=404)
        return render(request, session, "lead.html", page="attention", **data)

    async def act(request: Request, session: Session) -> Response:
        enrollment, action = _int(request.path_params["enrollment"]), request.path_params["action"]
        if action not in actions.ACTIONS:
            return PlainTextResponse("No such action.", status_code=404)
        try:
            message = await run_in_threadpool(actions.perform, action, enrollment, project.config, clock())
        except actions.UnknownLead:
            return PlainTextResponse("No such lead.", status_code=404)
        root = request.scope.get("root_path", "")
        response = RedirectResponse(f"{root}/leads/{enrollment}", status_code=303)
        text = urllib.parse.quote(message)
        response.set_cookie(FLASH, f"{text}.{guard.sign(f'flash:{text}')}", max_age=60,
                            httponly=True, samesite="strict", path="/")
        return response

    async def sequences(request: Request, session: Session) -> Response:
        names = sorted(project.sequences)
        if len(names) == 1:
            return RedirectResponse(f"{request.scope.get('root_path', '')}/sequences/{urllib.parse.quote(names[0])}",
                                    status_code=303)
        return render(request, session, "sequences.html", page="sequence", names=names)

    async def sequence(request: Request, session: Session) -> Response:
        data = await run_in_threadpool(views.sequence_page, project, request.path_params["name"])
        if data is None:
            return PlainTextResponse("No such sequence.", status_code=404)
        return render(request, session, "sequence.html", page="sequence", names=sorted(project.sequences), **data)

    async def webhooks(request: Request, session: Session) -> Response:
        rows = views.webhook_rows(deliveries)
        return render(request, session, "webhooks.html", page="webhooks", rows=rows,
                      has_log=deliveries is not None)

    async def login_form(request: Request, session: Session) -> Response:
        if not guard.require_login:
            return RedirectResponse(f"{request.scope.get('root_path', '')}/", status_code=303)
        return render(request, session, "login.html", page="login", error="")

    async def login(request: Request, session: Session) -> Response:
        if not guard.require_login:
            return RedirectResponse(f"{request.scope.get('root_path', '')}/", status_code=303)
        if not guard.token_matches(request.state.form.get("token", "")):
            response = render(request, session, "login.html", page="login", error="That is not the dashboard token.")
            response.status_code = 401
            return response
        redirect = RedirectResponse(f"{request.scope.get('root_path', '')}/", status_code=303)
        # A new session id at login, so that a session id planted before it is worth nothing.
        _set_cookie(redirect, guard, guard.new_session(clock(), logged_in=True), request)
        return redirect

    async def logout(request: Request, session: Session) -> Response:
        response = RedirectResponse(f"{request.scope.get('root_path', '')}/login", status_code=303)
        _set_cookie(response, guard, guard.new_session(clock()), request)
        return response

    routes = [
        Route("/", guarded(overview)),
        Route("/attention", guarded(attention)),
        Route("/leads/{enrollment}", guarded(lead)),
        Route("/leads/{enrollment}/{action}", guarded(act, post=True), methods=["POST"]),
        Route("/sequences", guarded(sequences)),
        Route("/sequences/{name}", guarded(sequence)),
        Route("/webhooks", guarded(webhooks)),
        Route("/login", guarded(login_form, open_page=True)),
        Route("/login", guarded(login, post=True, open_page=True), methods=["POST"]),
        Route("/logout", guarded(logout, post=True, open_page=True), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])


class SecurityHeaders:
    """Adds `HEADERS` (a strict Content-Security-Policy, no framing, no caching) to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _int(text: str) -> int:
    return int(text) if text.isdigit() else -1


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the only kind the dashboard's forms send), first value per field."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = await request.body()
    if len(body) > 64_000:
        return {}
    return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}


def _set_cookie(response: Response, guard: Guard, session: Session, request: Request) -> None:
    response.set_cookie(COOKIE, guard.dump(session), httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")


def _with_session(response: Response, guard: Guard, session: Session, request: Request, fresh: bool) -> Response:
    if fresh and COOKIE not in response.headers.get("set-cookie", ""):
        _set_cookie(response, guard, session, request)
    return response
