"""LinkedIn profile URL normalisation: the key decides what counts as the same person."""
from __future__ import annotations

import pytest

from runner.language.urls import normalize_profile_url

JANE = ("jane-doe", "https://www.linkedin.com/in/jane-doe")

ACCEPTED = [
    ("https://www.linkedin.com/in/jane-doe", JANE),
    ("http://www.linkedin.com/in/jane-doe", JANE),
    ("www.linkedin.com/in/jane-doe", JANE),
    ("linkedin.com/in/jane-doe", JANE),
    ("//www.linkedin.com/in/jane-doe", JANE),
    ("https://www.linkedin.com/in/jane-doe/", JANE),
    ("  https://www.linkedin.com/in/jane-doe  ", JANE),
    ("https://www.linkedin.com/in/Jane-Doe", JANE),
    ("HTTPS://WWW.LINKEDIN.COM/in/JANE-DOE", JANE),
    ("https://de.linkedin.com/in/jane-doe", JANE),
    ("https://m.linkedin.com/in/jane-doe", JANE),
    ("https://fr-ca.linkedin.com/in/jane-doe", JANE),
    ("https://www.linkedin.com:443/in/jane-doe", JANE),
    ("https://www.linkedin.com/in/jane-doe?trk=public_profile&originalSubdomain=de", JANE),
    ("https://www.linkedin.com/in/jane-doe#experience", JANE),
    ("https://www.linkedin.com/in/jane-doe/en", JANE),
    ("https://www.linkedin.com/in/jane-doe/details/experience/", JANE),
    ("https://www.linkedin.com/mwlite/in/jane-doe", JANE),
    ("https://www.linkedin.com/in/jane_doe_99", ("jane_doe_99", "https://www.linkedin.com/in/jane_doe_99")),
    ("https://www.linkedin.com/in/j%C3%BCrgen-m%C3%BCller",
     ("jürgen-müller", "https://www.linkedin.com/in/j%C3%BCrgen-m%C3%BCller")),
    ("https://www.linkedin.com/in/Jürgen-Müller",
     ("jürgen-müller", "https://www.linkedin.com/in/j%C3%BCrgen-m%C3%BCller")),
    ("https://www.linkedin.com/in/%E7%8E%8B%E5%B0%8F%E6%98%8E",
     ("王小明", "https://www.linkedin.com/in/%E7%8E%8B%E5%B0%8F%E6%98%8E")),
    ("https://www.linkedin.com/in/straße-42", ("straße-42", "https://www.linkedin.com/in/stra%C3%9Fe-42")),
    # member tokens are base64-like: their case is significant
    ("https://www.linkedin.com/in/ACoAABcdEFGhijKLmnOPqrsTUvw",
     ("ACoAABcdEFGhijKLmnOPqrsTUvw", "https://www.linkedin.com/in/ACoAABcdEFGhijKLmnOPqrsTUvw")),
    # old public URLs redirect to /in/NAME-<parts reversed, zero-padded>
    ("https://sy.linkedin.com/pub/krzysztof-marzec/a7/576/b50?trk=biz_employee_pub",
     ("krzysztof-marzec-b50576a7", "https://www.linkedin.com/in/krzysztof-marzec-b50576a7")),
    ("https://uk.linkedin.com/pub/abdi-ahmed/100/384/6b0",
     ("abdi-ahmed-6b0384100", "https://www.linkedin.com/in/abdi-ahmed-6b0384100")),
    ("https://www.linkedin.com/pub/john-smith/3/2/1", ("john-smith-0010023", "https://www.linkedin.com/in/john-smith-0010023")),
    # Sales Navigator ids are kept apart and keep their case
    ("https://www.linkedin.com/sales/lead/ACwAAAbCdEfGh,NAME_SEARCH,xyZ1",
     ("sn:ACwAAAbCdEfGh", "https://www.linkedin.com/sales/lead/ACwAAAbCdEfGh")),
    ("https://www.linkedin.com/sales/people/ACwAAAbCdEfGh,NAME_SEARCH",
     ("sn:ACwAAAbCdEfGh", "https://www.linkedin.com/sales/lead/ACwAAAbCdEfGh")),
    ("linkedin.com/sales/lead/ACwAAAbCdEfGh?trk=x",
     ("sn:ACwAAAbCdEfGh", "https://www.linkedin.com/sales/lead/ACwAAAbCdEfGh")),
]

REJECTED = [
    ("", "it is empty"),
    ("htps://x", 'expected an http(s) URL, got scheme "htps"'),
    ("ftp://www.linkedin.com/in/jane-doe", 'expected an http(s) URL, got scheme "ftp"'),
    ("https://example.com/in/jane-doe", 'host "example.com" is not linkedin.com'),
    ("https://linkedin.com.evil.io/in/jane-doe", 'host "linkedin.com.evil.io" is not linkedin.com'),
    ("https://notlinkedin.com/in/jane-doe", 'host "notlinkedin.com" is not linkedin.com'),
    ("https://user:pw@www.linkedin.com/in/jane-doe", "it contains a user name or password"),
    ("https://lnkd.in/abc123", "a shortened lnkd.in link; open it and use the profile URL it leads to"),
    ("https://www.linkedin.com/in/jane doe", "it contains spaces"),
    ("https://www.linkedin.com/", 'expected a path like /in/HANDLE, got "/"'),
    ("https://www.linkedin.com/in/", 'expected a path like /in/HANDLE, got "/in/"'),
    ("https://www.linkedin.com/feed/", "a feed link, not a person's profile"),
    ("https://www.linkedin.com/company/acme", "a company page, not a person's profile"),
    ("https://www.linkedin.com/school/mit/", "a school page, not a person's profile"),
    ("https://www.linkedin.com/in/ab", 'handle "ab" is shorter than 3 characters'),
    ("https://www.linkedin.com/in/" + "a" * 101, "handle is longer than 100 characters"),
    ("https://www.linkedin.com/in/jane.doe",
     'handle "jane.doe" contains "."; handles are letters, digits, "-" and "_"'),
    ("https://www.linkedin.com/in/jane%2Fdoe",
     'handle "jane/doe" contains "/"; handles are letters, digits, "-" and "_"'),
    ("https://www.linkedin.com/in/jane%FFdoe", '"jane%FFdoe" is not valid percent-encoded UTF-8'),
    ("https://www.linkedin.com/pub/john-smith/zz/2/1",
     "an old /pub/ URL whose id parts are not recognised; open it and use the URL it leads to"),
    ("https://www.linkedin.com/sales/lead/AC!x,NAME_SEARCH", 'Sales Navigator id "AC!x" is not valid'),
]


@pytest.mark.parametrize(("url", "expected"), ACCEPTED, ids=[u for u, _ in ACCEPTED])
def test_accepted_urls_normalise(url: str, expected: tuple[str, str]) -> None:
    assert normalize_profile_url(url) == expected


@pytest.mark.parametrize(("url", "reason"), REJECTED, ids=[u or "<empty>" for u, _ in REJECTED])
def test_rejected_urls_say_why(url: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        normalize_profile_url(url)
    assert str(info.value) == reason


def test_canonical_url_normalises_to_itself() -> None:
    for url, (key, canonical) in ACCEPTED:
        assert normalize_profile_url(canonical) == (key, canonical), url


def test_sales_navigator_ids_are_case_sensitive() -> None:
    upper = normalize_profile_url("https://www.linkedin.com/sales/lead/ACwAAAbCdEfGh")[0]
    lower = normalize_profile_url("https://www.linkedin.com/sales/lead/ACwAAAbCdEfGH")[0]
    assert upper != lower


# --- credentials in URLs --------------------------------------------------------------------------

from runner.language.urls import redact_secrets, redact_url, url_secrets  # noqa: E402


@pytest.mark.parametrize(("url", "found"), [
    ("https://crm.example.com/hooks/seqrun?source=linkedin", []),
    ("https://crm.example.com/hooks?monkey=1&keys=2&tokens_left=3", []),
    ("https://user:pass@crm.example.com/hook", ["a user name or password"]),
    ("https://user@crm.example.com/hook", ["a user name or password"]),
    ("https://crm.example.com/hook?api_key=abc&x=1", ['query parameter "api_key"']),
    ("https://crm.example.com/hook?X-Api-Key=abc", ['query parameter "X-Api-Key"']),
    ("https://crm.example.com/hook?access_token=a&token=b&Signature=c&sig=d&hapikey=e&password=f&client_secret=g"
     "&key=h&auth=i", ['query parameter "access_token"', 'query parameter "token"', 'query parameter "Signature"',
                       'query parameter "sig"', 'query parameter "hapikey"', 'query parameter "password"',
                       'query parameter "client_secret"', 'query parameter "key"', 'query parameter "auth"']),
    ("https://u:p@crm.example.com/hook#access_token=x", ["a user name or password",
                                                         'query parameter "access_token"']),
])
def test_url_secrets_names_what_it_found_without_values(url: str, found: list[str]) -> None:
    assert url_secrets(url) == found


def test_redact_url_keeps_everything_but_the_secrets() -> None:
    assert redact_url("https://user:pass@crm.example.com:8443/hook?api_key=abc&x=1&Token=t%20u#frag") == \
        "https://***@crm.example.com:8443/hook?api_key=***&x=1&Token=***#frag"
    assert redact_url("https://crm.example.com/hook?x=1") == "https://crm.example.com/hook?x=1"


def test_redact_secrets_finds_urls_in_any_text() -> None:
    text = ("notify failed: Client error '401 Unauthorized' for url 'https://crm.example.com/h?token=s3cr3t&a=b'\n"
            "also http://admin:hunter2@10.0.0.1/x, and no URL here: token=plain")
    assert redact_secrets(text) == (
        "notify failed: Client error '401 Unauthorized' for url 'https://crm.example.com/h?token=***&a=b'\n"
        "also http://***@10.0.0.1/x, and no URL here: token=plain")
    assert redact_secrets("Hi Jane, see https://example.com/page?ref=li") == \
        "Hi Jane, see https://example.com/page?ref=li"
