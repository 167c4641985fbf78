"""The project config `seqrun.yaml`: database, senders and sandbox options, checked like sequences.

`load_config` reads the file with the positioned YAML reader, checks it against
`runner/data/config.schema.json` and then semantically (providers with a driver, IANA time zones,
unique sender names, limits against LinkedIn's documented ceilings), and returns frozen records.
Every mistake is a positioned diagnostic: `seqrun.yaml:7:15: error: senders[name=alice].timezone: …`.

Secrets never live in this file. A sender names environment variables in `credentials_env`, and
`resolve_credentials` reads them when a driver is built; an `outgoing:` subscription names the
variable of its signing secret in `secret_env` (runner.outgoing reads it). A key that looks like a secret put straight
into the file is refused, and such values are never repeated in messages.

Without a `seqrun.yaml`, `default_config` builds the embedded default: one sandbox sender per name
the sequences list (or one called `sandbox`), classic, UTC.
"""
from __future__ import annotations

import difflib
import functools
import json
import math
import os
import pathlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from jsonschema import Draft202012Validator, ValidationError

from runner.language.diagnostics import Diagnostic, UserError, error, has_errors, sort_diagnostics, warning
from runner.language.model import CEILINGS, LIMITED_ACTIONS, Pos, Sequence
from runner.language.paths import PROJECT_CONFIG, TEMPLATES_DIR, find_project_root
from runner.language.schemacheck import error_parts, secret_name_message, show, simple_message
from runner.language.urls import url_secrets
from runner.language.yamlsrc import Path as YamlPath
from runner.language.yamlsrc import YamlDoc, load_yaml_file
from runner.outgoing import Subscription
from runner.outgoing_derive import EVENT_TYPES
from runner.providers import PROVIDERS
from runner.store.backends.postgres import has_password as postgres_has_password
from runner.store.db import DEFAULT_DB, resolve_db_url

ACCOUNT_TYPES = ("classic", "sales_navigator")
DEFAULT_SANDBOX_SENDER = "sandbox"

#: Seed 001 documents no ceiling for InMails ("based on subscription") or withdrawals. We default
#: to Salesflow's campaign defaults (20 open InMails, 40 withdrawals a day): conservative figures a
#: LinkedIn automation vendor ships to every account, and well under what subscriptions allow.
_UNDOCUMENTED_DEFAULTS: dict[str, int] = {"inmail": 20, "withdraw": 40}

#: Credentials each provider's driver needs, named in the sender's credentials_env.
REQUIRED_CREDENTIALS: dict[str, tuple[str, ...]] = {"edges": ("api_key",), "salesflow": ("api_key",),
                                                   "connectsafely": ("api_key",), "salesflow-campaign": ("api_key",)}

#: Sender keys only some providers take (each required there): key -> providers.
PROVIDER_SETTINGS: dict[str, tuple[str, ...]] = {"campaign_id": ("salesflow-campaign",),
                                                  "app_base_url": ("salesflow-campaign",)}
_REQUIRED_SETTINGS: dict[str, tuple[str, ...]] = {"salesflow-campaign": ("campaign_id",)}

# Keys people use when they paste a credential straight into the file.
_SECRET_KEY = re.compile(r"(api_?key|apikey|token|secret|password|passwd|cookie|li_at|bearer|credentials?)$",
                         re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """A sender as configured. `limits` holds only the overrides; see `daily_limits`."""

    name: str
    provider: str
    account_id: str
    account_type: str = "classic"
    timezone: str = "UTC"
    profile_id: str | None = None
    full_name: str | None = None
    limits: Mapping[str, int] = field(default_factory=dict)
    credentials_env: Mapping[str, str] = field(default_factory=dict)
    base_url: str | None = None  # the provider API's base URL; None: the provider's public API
    requests_per_minute: int | None = None  # the API request rate of the sender's key; None: the default
    campaign_id: str | None = None  # salesflow-campaign: the campaign its leads are imported into
    app_base_url: str | None = None  # salesflow-campaign: where GetCampaignStatistics is
    pos: Pos | None = None

    @property
    def settings(self) -> dict[str, str]:
        """Provider-specific settings handed to the driver with the account (`Account.settings`)."""
        values = {"campaign_id": self.campaign_id, "app_base_url": self.app_base_url}
        return {k: v for k, v in values.items() if v is not None}

    @property
    def daily_limits(self) -> dict[str, int]:
        """The sender's cap per limited action: the defaults for its account type, then overrides."""
        return {**default_limits(self.account_type), **self.limits}


@dataclass(frozen=True, slots=True)
class Config:
    path: str | None  # the seqrun.yaml read, None for the embedded default
    root: str  # the project directory (absolute)
    database: str | None  # as resolved against `root`; None = default
    senders: tuple[SenderConfig, ...]
    sandbox: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[Diagnostic, ...] = ()
    retry_budget_hours: float = 24.0  # `retry.budget_hours`
    outgoing: tuple[Subscription, ...] = ()  # `outgoing:`, the URLs lead events are POSTed to

    @property
    def sender_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.senders)

    def sender(self, name: str) -> SenderConfig | None:
        return next((s for s in self.senders if s.name == name), None)

    def database_url(self, option: str | None = None) -> str:
        """`--db`, then SEQRUN_DB, then `database:`, then seqrun.db in the project directory."""
        return resolve_db_url(option, self.database, self.root)

    def project_database_url(self) -> str:
        """The project's own database (`database:`, else seqrun.db in the project directory),
        whatever `--db` or SEQRUN_DB point this command at."""
        return self.database or str(pathlib.Path(self.root) / DEFAULT_DB)


def default_limits(account_type: str) -> dict[str, int]:
    """Daily caps for an account type when seqrun.yaml does not override them."""
    caps = {**CEILINGS[account_type], **_UNDOCUMENTED_DEFAULTS}
    return {action: caps[action] for action in LIMITED_ACTIONS}


#: What an HTTP header value may hold: printable ASCII and inner spaces.
_HEADER_SAFE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def resolve_credentials(sender: SenderConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Read the sender's credentials from the environment; a missing variable is a UserError."""
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    missing: list[str] = []
    for name, variable in sender.credentials_env.items():
        # A key read from a file often ends in a line break ("\r\n" from Windows); no credential
        # starts or ends with white space, and HTTP would refuse it, quoting the key in its error.
        value = env.get(variable, "").strip()
        if value and not _HEADER_SAFE.fullmatch(value):
            raise UserError(f"sender {sender.name}: environment variable {variable} (credentials_env.{name}) holds "
                            "a line break, a control character or a non-ASCII character, which an HTTP header "
                            "cannot carry (the value is not shown)")
        if value:
            values[name] = value
        else:
            missing.append(f"{variable} (credentials_env.{name})")
    if missing:
        which = "variable" if len(missing) == 1 else "variables"
        raise UserError(f"sender {sender.name}: environment {which} {', '.join(missing)} "
                        f"{'is' if len(missing) == 1 else 'are'} not set")
    return values


# --- finding the project --------------------------------------------------------------------------


def project_dir(start: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """The project directory for a command run in `start` (default: the current directory).

    Walks up to the first directory holding seqrun.yaml or templates/; without one, `start` itself
    (a command run in a bare directory works there, it does not climb to the parent).
    """
    here = pathlib.Path(start or os.getcwd()).resolve()
    if here.is_file():
        here = here.parent
    root = find_project_root(here)
    if (root / PROJECT_CONFIG).is_file() or (root / TEMPLATES_DIR).is_dir():
        return root
    return here


def find_config(start: str | os.PathLike[str] | None = None) -> pathlib.Path | None:
    """The seqrun.yaml of the project `start` (a directory or sequence file) belongs to, if any."""
    path = pathlib.Path(start or os.getcwd()).resolve()
    root = find_project_root(path) if path.is_file() else project_dir(path)
    candidate = root / PROJECT_CONFIG
    return candidate if candidate.is_file() else None


def load_project_config(start: str | os.PathLike[str] | None = None,
                        sequences: Iterable[Sequence] = ()) -> Config:
    """The project's seqrun.yaml if it has one, else the embedded default for `sequences`."""
    found = find_config(start)
    if found is not None:
        return load_config(found)
    path = pathlib.Path(start or os.getcwd()).resolve()
    root = find_project_root(path) if path.is_file() else project_dir(path)
    return default_config(sequences, root=root)


def default_config(sequences: Iterable[Sequence] = (), *, root: str | os.PathLike[str] | None = None) -> Config:
    """One sandbox sender per name the sequences list (or one named `sandbox`), classic, UTC."""
    names = sorted({name for seq in sequences for name in seq.senders}) or [DEFAULT_SANDBOX_SENDER]
    senders = tuple(SenderConfig(name=name, provider="sandbox", account_id=name) for name in names)
    return Config(path=None, root=str(pathlib.Path(root or os.getcwd()).resolve()), database=None, senders=senders)


# --- loading --------------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check a seqrun.yaml (or the one in directory `path`); errors raise UserError."""
    file = pathlib.Path(path)
    if file.is_dir():
        file = file / PROJECT_CONFIG
    display = _display(file)
    doc, diags = load_yaml_file(str(file), display)
    if doc is None:
        raise UserError(diagnostics=diags)
    if not isinstance(doc.data, dict):
        line, col = doc.pos(())
        raise UserError(diagnostics=[error(display, line, col,
                                           f"expected a mapping like \"version: 1\", got {show(doc.data)}")])
    checker = _Checker(doc)
    checker.check()
    if has_errors(checker.diags):
        raise UserError(diagnostics=checker.diags)
    return _build(doc, file.resolve(), tuple(sort_diagnostics(checker.diags)))


def _display(file: pathlib.Path) -> str:
    """The file as messages name it: relative to the current directory when inside it."""
    try:
        return str(file.resolve().relative_to(pathlib.Path.cwd()))
    except ValueError:
        return str(file)


def _build(doc: YamlDoc, file: pathlib.Path, warnings: tuple[Diagnostic, ...]) -> Config:
    data = doc.data
    senders = tuple(_sender(doc, i, raw) for i, raw in enumerate(data.get("senders") or []))
    sandbox = dict(data.get("sandbox") or {})
    if "state_path" in sandbox:
        sandbox["state_path"] = str(file.parent / pathlib.Path(sandbox["state_path"]).expanduser())
    retry = data.get("retry") or {}
    return Config(path=doc.file, root=str(file.parent), database=_anchor_database(data.get("database"), file.parent),
                  senders=senders, sandbox=sandbox, warnings=warnings,
                  retry_budget_hours=float(retry.get("budget_hours", 24.0)),
                  outgoing=tuple(_subscription(doc, i, raw) for i, raw in enumerate(data.get("outgoing") or [])))


def _subscription(doc: YamlDoc, index: int, raw: dict[str, Any]) -> Subscription:
    line, col = doc.pos(("outgoing", index))
    events = tuple(raw["events"]) if raw.get("events") else EVENT_TYPES
    return Subscription(name=raw["name"], secret_env=raw["secret_env"], url=raw.get("url"), url_env=raw.get("url_env"),
                        events=events, pos=Pos(doc.file, line, col))


def _sender(doc: YamlDoc, index: int, raw: dict[str, Any]) -> SenderConfig:
    line, col = doc.pos(("senders", index))
    return SenderConfig(
        name=raw["name"], provider=raw["provider"], account_id=raw["account_id"],
        account_type=raw.get("account_type", "classic"), timezone=raw.get("timezone", "UTC"),
        profile_id=raw.get("profile_id"), full_name=raw.get("full_name"),
        limits=dict(raw.get("limits") or {}), credentials_env=dict(raw.get("credentials_env") or {}),
        base_url=raw.get("base_url"), requests_per_minute=raw.get("requests_per_minute"),
        campaign_id=None if raw.get("campaign_id") is None else str(raw["campaign_id"]),
        app_base_url=raw.get("app_base_url"), pos=Pos(doc.file, line, col))


def _has_password(database: Any) -> bool:
    """Whether a `database:` URL carries a password (`postgresql://user:password@host/db`)."""
    if not isinstance(database, str) or "://" not in database:
        return False
    return postgres_has_password(database)


def _anchor_database(value: str | None, root: pathlib.Path) -> str | None:
    """A relative database path in seqrun.yaml means relative to the file, not to the cwd."""
    if value is None or value == ":memory:":
        return value
    prefix = "sqlite:///" if value.startswith("sqlite:///") else ""
    rest = value[len(prefix):]
    if "://" in value and not prefix:
        return value  # another scheme; the store says whether it supports it
    path = pathlib.Path(rest).expanduser()
    return prefix + str(path if path.is_absolute() else root / path)


# --- checking -------------------------------------------------------------------------------------


@functools.cache
def load_schema() -> dict[str, Any]:
    text = resources.files("runner").joinpath("data/config.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


class _Checker:
    """Schema and semantic checks for one parsed seqrun.yaml, collecting diagnostics."""

    def __init__(self, doc: YamlDoc) -> None:
        self.doc = doc
        self.diags: list[Diagnostic] = []

    def add(self, path: YamlPath, message: str, *, key: bool = False, severity: str = "error") -> None:
        line, col = self.doc.pos(path, key=key)
        make = error if severity == "error" else warning
        label = self.describe(path)
        self.diags.append(make(self.doc.file, line, col, f"{label}: {message}" if label else message))

    def describe(self, path: YamlPath) -> str:
        """`("senders", 0, "timezone")` -> `senders[name=alice].timezone` (by index if unnamed)."""
        out = ""
        for i, part in enumerate(path):
            if isinstance(part, int):
                name = self._item_name(path[0], part) if path[:i] in (("senders",), ("outgoing",)) else None
                out += f"[name={name}]" if name else f"[{part}]"
            else:
                out += f".{part}" if out else part
        return out

    def _item_name(self, key: str | int, index: int) -> str | None:
        """The name of item `index` of the list `key` (senders, outgoing), if it has a valid one."""
        items = self.doc.data.get(key)
        item = items[index] if isinstance(items, list) and index < len(items) else None
        name = item.get("name") if isinstance(item, dict) else None
        return name if isinstance(name, str) and re.fullmatch(r"[a-z][a-z0-9_-]*", name) else None

    def check(self) -> None:
        data = self.doc.data
        self._version(data)
        if has_errors(self.diags):
            return
        secret_keys = self._secret_keys(data)
        for err in _leaves(_validator().iter_errors(data)):
            self._convert(err, secret_keys)
        if not has_errors(self.diags):
            self._semantics(data)

    def _version(self, data: dict[str, Any]) -> None:
        value = data.get("version", 1)
        if type(value) is not int or value != 1:
            self.add(("version",), f"unsupported version {show(value)}; this seqrun reads version 1")

    def _secret_keys(self, data: dict[str, Any]) -> set[YamlPath]:
        """Report keys holding a credential directly; they are then not reported as unknown."""
        found: set[YamlPath] = set()
        places: list[tuple[YamlPath, Any]] = [((), data)]
        places += [(("senders", i), s) for i, s in enumerate(data.get("senders") or []) if isinstance(s, dict)]
        hooks: list[tuple[YamlPath, Any]] = [(("outgoing", i), s) for i, s in enumerate(data.get("outgoing") or []) if isinstance(s, dict)]
        for base, mapping in hooks:
            for key in mapping:
                if _SECRET_KEY.search(key):
                    found.add(base + (key,))
                    self.add(base + (key,), "secrets do not belong in seqrun.yaml; put the signing secret in an "
                                            "environment variable and name it in secret_env, e.g. "
                                            "secret_env: SEQRUN_HOOK_SECRET", key=True)
        for base, mapping in places:
            for key in mapping:
                if key != "credentials_env" and _SECRET_KEY.search(key):
                    path = base + (key,)
                    found.add(path)
                    owner = self._item_name("senders", int(base[1])) if base else None
                    variable = re.sub(r"\W", "_", f"{owner}_{key}" if owner else key).upper()
                    self.add(path, "secrets do not belong in seqrun.yaml; put the value in an environment "
                                   "variable and name it in the sender's credentials_env, e.g. "
                                   f"credentials_env: {{{key.lower()}: {variable}}}", key=True)
        if _has_password(data.get("database")):
            self.add(("database",), "a password does not belong in seqrun.yaml; remove it from the URL and give it "
                                    "to Postgres through PGPASSWORD or ~/.pgpass (the value is not shown)")
        return found

    def _convert(self, err: ValidationError, secret_keys: set[YamlPath]) -> None:
        path: YamlPath = tuple(err.absolute_path)
        validator, value, instance, schema = error_parts(err)
        if validator == "additionalProperties":
            expected = ", ".join(schema.get("properties", {}))
            for key in instance:
                if key not in schema.get("properties", {}) and path + (key,) not in secret_keys:
                    self.add(path + (key,), f'unknown key "{key}" (expected one of: {expected})', key=True)
        elif path[:1] == ("outgoing",) and path[-1:] == ("url",) and validator == "pattern":
            self.add(path, 'expected an http(s) URL like "https://crm.example.com/hooks/seqrun" (the value is not '
                           'shown)')
        elif path[:1] == ("outgoing",) and path[-1:] in (("secret_env",), ("url_env",)) and validator in ("pattern",
                                                                                                       "type"):
            self.add(path, secret_name_message(instance, "SEQRUN_HOOK_SECRET" if path[-1] == "secret_env"
                                               else "CRM_HOOK_URL"))
        elif path[:1] == ("outgoing",) and path[-2:-1] == ("events",) and validator == "enum":
            guess = difflib.get_close_matches(str(instance), list(value), n=1)
            hint = f'; did you mean "{guess[0]}"?' if guess else f" (expected one of: {', '.join(value)})"
            self.add(path, f"unknown event type {show(instance)}{hint}")
        elif path[:1] == ("outgoing",) and path[-1:] == ("events",) and validator == "minItems":
            self.add(path, 'expected at least one event type, like [lead.replied]; leave "events" out to send every '
                           "type")
        elif path[:1] == ("outgoing",) and validator == "uniqueItems":
            self.add(path, "an event type is listed twice")
        elif path[-1:] in (("base_url",), ("app_base_url",)) and validator == "pattern":
            # Never echo the value: a URL may carry a token in its query string.
            self.add(path, 'expected an http(s) URL without query string or fragment, like '
                           '"https://api.edges.run/v1" (the value is not shown)')
        elif path[-1:] == ("credentials_env",) and validator == "type":
            self.add(path, "expected a mapping of credential names to environment variable names, like "
                           "{api_key: SALESFLOW_API_KEY} (the value is not shown)")
        elif path[-2:-1] == ("credentials_env",) and validator in ("pattern", "type"):
            self.add(path, _credential_message(instance))
        elif "propertyNames" in err.relative_schema_path and path[-1:] == ("credentials_env",):
            self.add(path + (instance,), f'credential name {show(instance)} must be lower-case letters, digits and '
                                         f'"_", like "api_key"', key=True)
        elif "propertyNames" in err.relative_schema_path:
            self.add(path + (instance,), f"unknown key {show(instance)} (expected one of: {', '.join(map(str, value))})",
                     key=True)
        elif validator == "required":
            for key in value:
                if isinstance(instance, dict) and key not in instance:
                    self.add(path, f'missing required key "{key}"')
        elif validator == "pattern":
            self.add(path, f'expected a name of lower-case letters, digits, "_" and "-" starting with a letter, '
                           f"got {show(instance)}")
        elif validator in ("minItems", "maxItems"):
            self.add(path, f"expected [median, max] in hours, like [30, 504], got {len(instance)} numbers")
        else:  # shared wording, else jsonschema's text, which is accurate (no secrets reach here)
            self.add(path, simple_message(err) or err.message)

    def _semantics(self, data: dict[str, Any]) -> None:
        infinite = list(_non_finite(data))
        for path, value in infinite:  # YAML's .nan passes every bound of the schema
            self.add(path, f"expected a number, got {value}")
        if infinite:
            return
        first_line: dict[str, int] = {}
        for index, sender in enumerate(data.get("senders") or []):
            base: YamlPath = ("senders", index)
            self._once(base, "sender", sender["name"], first_line)
            if sender["provider"] not in PROVIDERS:
                available = ", ".join(sorted(PROVIDERS))
                self.add(base + ("provider",), f"provider {sender['provider']} has no driver in this version "
                                               f"(available: {available})")
            required = REQUIRED_CREDENTIALS.get(sender["provider"], ())
            missing = [c for c in required if c not in (sender.get("credentials_env") or {})]
            if missing:
                example = ", ".join(f"{c}: {sender['provider'].upper()}_{c.upper()}" for c in missing)
                self.add(base, f"provider {sender['provider']} needs credentials_env with {', '.join(missing)} "
                               f"(the name of the environment variable holding it), e.g. "
                               f"credentials_env: {{{example}}}")
            self._provider_settings(base, sender)
            for key in ("base_url", "app_base_url"):
                if sender.get(key) and url_secrets(sender[key]):
                    found = "; ".join(url_secrets(sender[key]))
                    self.add(base + (key,), f"the URL carries a credential ({found}); secrets do not belong in "
                                            "seqrun.yaml: put the value in an environment variable and name it in "
                                            "credentials_env (the URL is not shown)")
            if "timezone" in sender:
                self._timezone(base + ("timezone",), sender["timezone"])
            self._limits(base, sender.get("account_type", "classic"), sender.get("limits") or {})
        self._outgoing(data.get("outgoing") or [])
        if data.get("sandbox"):
            self._sandbox(data["sandbox"])

    def _once(self, base: YamlPath, what: str, name: str, first_line: dict[str, int]) -> None:
        """A name given twice in a list is an error at the second, naming the line of the first."""
        if name in first_line:
            self.add(base + ("name",), f'{what} "{name}" is defined twice (first on line {first_line[name]})')
        else:
            first_line[name] = self.doc.pos(base + ("name",))[0]

    def _outgoing(self, subscriptions: list[dict[str, Any]]) -> None:
        first_line: dict[str, int] = {}
        for index, sub in enumerate(subscriptions):
            base: YamlPath = ("outgoing", index)
            self._once(base, "outgoing", sub["name"], first_line)
            if ("url" in sub) == ("url_env" in sub):
                self.add(base, 'expected "url" (the URL) or "url_env" (the name of an environment variable holding '
                               "it), " + ("not both" if "url" in sub else "got neither"))
            elif sub.get("url") and url_secrets(sub["url"]):
                found = "; ".join(url_secrets(sub["url"]))
                self.add(base + ("url",), f"the URL carries a credential ({found}); secrets do not belong in "
                                          "seqrun.yaml: put the whole URL in an environment variable and name it "
                                          "in url_env (the URL is not shown)")

    def _provider_settings(self, base: YamlPath, sender: dict[str, Any]) -> None:
        provider = sender["provider"]
        for key, providers in PROVIDER_SETTINGS.items():
            if key in sender and provider not in providers:
                self.add(base + (key,), f"only a sender with provider {' or '.join(providers)} takes {key} "
                                        f"(this one acts through {provider})", key=True)
        for key in _REQUIRED_SETTINGS.get(provider, ()):
            if key not in sender:
                self.add(base, f'provider {provider} needs "{key}": the Salesflow campaign this sender\'s leads are '
                               f"imported into (its number, from the campaign's address in Salesflow)")

    def _sandbox(self, options: dict[str, Any]) -> None:
        """Options that are fine one by one but not together: reported here, not when simulate starts."""
        from runner.providers.sandbox import option_problems  # the sandbox module loads only when needed

        for path, message in option_problems(options):
            if path[0].endswith("_rate"):  # a sum of rates: shown at the first one set, named as the block
                line, col = self.doc.pos(("sandbox", *path), key=True)
                self.diags.append(error(self.doc.file, line, col, f"sandbox: {message}"))
            else:
                self.add(("sandbox", *path), message)

    def _timezone(self, path: YamlPath, zone: str) -> None:
        if zone in _zones():
            try:
                ZoneInfo(zone)
                return
            except (ZoneInfoNotFoundError, ValueError):
                pass
        guess = difflib.get_close_matches(zone, sorted(_zones()), n=1, cutoff=0.7)
        hint = f'; did you mean "{guess[0]}"?' if guess else ' (expected an IANA name like "Europe/Berlin")'
        self.add(path, f"unknown time zone {show(zone)}{hint}")

    def _limits(self, base: YamlPath, account_type: str, limits: dict[str, int]) -> None:
        ceilings = CEILINGS[account_type]
        for action, daily in limits.items():
            ceiling = ceilings.get(action)
            if ceiling is not None and daily > ceiling:
                kind = "Sales Navigator" if account_type == "sales_navigator" else "classic"
                self.add(base + ("limits", action),
                         f"{daily} is above LinkedIn's documented ceiling of {ceiling} {action}s a day for "
                         f"{kind} accounts; the account risks restrictions", severity="warning")




def _non_finite(value: Any, path: tuple[str | int, ...] = ()) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """(path, the value as YAML writes it) for every .nan or .inf inside `value`."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*path, index))


def _leaves(errors: Iterable[ValidationError]) -> Iterable[ValidationError]:
    for err in errors:
        if err.validator in ("oneOf", "anyOf") and err.context:
            yield from _leaves(err.context)
        else:
            yield err


def _credential_message(value: object) -> str:
    """Never echo the value: if it is not a variable name it may well be the secret itself."""
    return secret_name_message(value, "SALESFLOW_API_KEY")
