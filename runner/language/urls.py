"""LinkedIn profile URLs: one canonical form and one de-duplication key per person.

People paste profile URLs in every shape LinkedIn ever produced: with or without scheme, `www.`,
country (`de.`) or mobile (`m.`) hosts, tracking query strings, trailing slashes, percent-encoded
non-ASCII handles, locale suffixes (`/in/jane/en`), old `/pub/` URLs and Sales Navigator links.
`normalize_profile_url` maps each of them to

- a **key** that is equal for two URLs exactly when they name the same profile, and
- a **canonical URL** (`https://www.linkedin.com/in/jane-doe`) that providers accept.

Public handles are case-insensitive on LinkedIn, so the key folds case. Member tokens
(`/in/ACoAA…`) and Sales Navigator ids (`/sales/lead/ACwAA…`) are base64-like and case-sensitive,
so they keep their case; Sales Navigator keys are prefixed `sn:` because the same person has a
different id there than in their public URL, and we cannot map one to the other offline.

Secrets in URLs: `url_secrets` says what in a URL is a credential (a user name or password, query
parameters named like api_key, token, secret, sig…) without repeating it; sequences refuse such
URLs. `redact_url` and `redact_secrets` (for any text holding URLs, such as error messages) replace
the values with `***` wherever a URL reaches the store or an export, as a second line of defence.
"""
from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote, unquote

CANONICAL_HOST = "https://www.linkedin.com"

HANDLE_MIN, HANDLE_MAX = 3, 100

# The common case, checked first so that a 100k-row import does not pay for the general parser.
_FAST = re.compile(r"(?:https?://)?(?:www\.)?linkedin\.com/in/([a-z0-9][a-z0-9_-]{2,99})/?", re.ASCII)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(//)?")
# www., m. and mobile. (mobile site), country or language subdomains such as de., uk., fr-ca.
_HOST = re.compile(r"(?:[a-z]{1,3}(?:-[a-z]{2})?\.|www\.|mobile\.)?linkedin\.com")
# Member tokens as LinkedIn puts them in /in/ URLs (urn:li:fsd_profile ids): case matters.
_MEMBER_TOKEN = re.compile(r"ACoA[A-Za-z0-9_-]{20,}", re.ASCII)
_SALES_ID = re.compile(r"[A-Za-z0-9_-]{8,200}", re.ASCII)
_PUB_PART = re.compile(r"[0-9a-f]{1,3}", re.ASCII)

_NOT_PEOPLE = {
    "company": "a company page",
    "school": "a school page",
    "showcase": "a showcase page",
    "groups": "a group",
    "feed": "a feed link",
    "posts": "a post",
    "pulse": "an article",
    "jobs": "a job posting",
    "events": "an event",
    "talent": "a Recruiter link",
}


def normalize_profile_url(url: str) -> tuple[str, str]:
    """Return `(key, canonical_url)` for a LinkedIn profile URL, or raise `ValueError(reason)`.

    The reason completes the sentence `… is not a LinkedIn profile URL (REASON)`.
    """
    text = url.strip()
    fast = _FAST.fullmatch(text)
    if fast:
        handle = fast.group(1)
        return handle, f"{CANONICAL_HOST}/in/{handle}"
    if not text:
        raise ValueError("it is empty")
    if any(c.isspace() for c in text):
        raise ValueError("it contains spaces")
    host, path = _split(text)
    _check_host(host)
    segments = [_unquote(s) for s in path.split("/") if s]
    return _profile(segments, path)


def _split(text: str) -> tuple[str, str]:
    """Host (lower case, no port) and path of `text`, without query string or fragment."""
    scheme = _SCHEME.match(text)
    if scheme and (scheme.group(2) or scheme.group(1).lower() in ("http", "https")):
        if scheme.group(1).lower() not in ("http", "https"):
            raise ValueError(f'expected an http(s) URL, got scheme "{scheme.group(1)}"')
        text = text[scheme.end():]
    elif text.startswith("//"):
        text = text[2:]
    text = re.split(r"[?#]", text, maxsplit=1)[0]
    host, _, path = text.partition("/")
    if "@" in host:
        raise ValueError("it contains a user name or password")
    host = host.rsplit(":", 1)[0] if re.search(r":\d*$", host) else host
    return host.lower().rstrip("."), path


def _check_host(host: str) -> None:
    if _HOST.fullmatch(host):
        return
    if host == "lnkd.in":
        raise ValueError("a shortened lnkd.in link; open it and use the profile URL it leads to")
    if not host:
        raise ValueError("it has no host")
    raise ValueError(f'host "{host}" is not linkedin.com')


def _unquote(segment: str) -> str:
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f'"{segment}" is not valid percent-encoded UTF-8') from None


def _profile(segments: list[str], path: str) -> tuple[str, str]:
    if segments[:1] == ["mwlite"]:  # LinkedIn's lightweight mobile site
        segments = segments[1:]
    kind = segments[0].lower() if segments else ""
    if kind == "in" and len(segments) >= 2:
        # Anything after the handle is a locale (/en) or a sub-page (/details/experience).
        return _handle(segments[1])
    if kind == "pub" and len(segments) >= 2:
        return _pub(segments[1:])
    if kind == "sales" and len(segments) >= 3 and segments[1].lower() in ("lead", "people"):
        return _sales(segments[2])
    if kind in _NOT_PEOPLE:
        raise ValueError(f"{_NOT_PEOPLE[kind]}, not a person's profile")
    shown = "/" + path if path else "/"
    raise ValueError(f'expected a path like /in/HANDLE, got "{shown}"')


def _handle(handle: str) -> tuple[str, str]:
    if _MEMBER_TOKEN.fullmatch(handle):
        return handle, f"{CANONICAL_HOST}/in/{handle}"
    _check_handle(handle)
    # lower() rather than casefold(): casefold turns "ß" into "ss", which is a different handle.
    folded = handle.lower()
    return folded, f"{CANONICAL_HOST}/in/{quote(folded, safe='-_')}"


def _check_handle(handle: str) -> None:
    if len(handle) < HANDLE_MIN:
        raise ValueError(f'handle "{handle}" is shorter than {HANDLE_MIN} characters')
    if len(handle) > HANDLE_MAX:
        raise ValueError(f"handle is longer than {HANDLE_MAX} characters")
    for char in handle:
        if char in "-_" or unicodedata.category(char)[0] in "LMN":
            continue
        raise ValueError(f'handle "{handle}" contains "{char}"; handles are letters, digits, "-" and "_"')


def _pub(parts: list[str]) -> tuple[str, str]:
    """Old public URLs: /pub/NAME/A/B/C redirects to /in/NAME-CCCBBBA (hex parts, zero-padded)."""
    name, ids = parts[0], [p.lower() for p in parts[1:4]]
    if len(ids) == 3 and all(_PUB_PART.fullmatch(p) for p in ids):
        return _handle(f"{name}-{ids[2].zfill(3)}{ids[1].zfill(3)}{ids[0]}")
    if len(parts) == 1:  # some /pub/NAME links had no numeric suffix
        return _handle(name)
    raise ValueError("an old /pub/ URL whose id parts are not recognised; open it and use the URL it leads to")


def _sales(ref: str) -> tuple[str, str]:
    sales_id = ref.split(",", 1)[0]  # /sales/lead/ID,NAME_SEARCH,xyz
    if not _SALES_ID.fullmatch(sales_id):
        raise ValueError(f'Sales Navigator id "{sales_id}" is not valid')
    return f"sn:{sales_id}", f"{CANONICAL_HOST}/sales/lead/{sales_id}"


# --- secrets in URLs ------------------------------------------------------------------------------

REDACTED = "***"
# Query (or fragment) parameter names that carry credentials: api_key, X-Api-Key, access_token,
# client_secret, Signature (S3, Azure SAS), hapikey (HubSpot)…; "monkey" or "tokens_left" do not.
_SECRET_PARAM = re.compile(r"(?:^|[^a-z0-9])(?:api[-_]?key|apikey|hapikey|key|token|secret|password|passwd|pwd|"
                           r"pass|sig|signature|auth|authorization|credentials?|session|sessionid|jwt|bearer|li_at)$")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@")
_PARAM = re.compile(r"([?&#;])([^=&#;]*)=([^&#;]*)")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def _secret_param(name: str) -> bool:
    return _SECRET_PARAM.search(unquote(name).lower()) is not None


def _split_query(url: str) -> tuple[str, str]:
    """(everything before the query or fragment, the rest)."""
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))
    return url[:cut], url[cut:]


def url_secrets(url: str) -> list[str]:
    """What in `url` is a credential, named without its value: "a user name or password",
    'query parameter "api_key"'; empty when nothing is."""
    found = ["a user name or password"] if _USERINFO.match(url) else []
    _, rest = _split_query(url)
    found += [f'query parameter "{m.group(2)}"' for m in _PARAM.finditer(rest) if _secret_param(m.group(2))]
    return found


def redact_url(url: str) -> str:
    """`url` with its user name/password and the values of secret-looking parameters replaced by ***."""
    url = _USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", url, count=1)
    head, rest = _split_query(url)
    return head + _PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}={REDACTED}" if _secret_param(m.group(2))
                             else m.group(), rest)


def redact_secrets(text: str) -> str:
    """Every URL in `text` redacted (see `redact_url`); other text is left as it is."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text)
