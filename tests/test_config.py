"""The project config seqrun.yaml: loading, positioned errors, secrets, defaults."""
from __future__ import annotations

import json
import pathlib
import textwrap

import pytest

from runner.language.diagnostics import UserError
from runner.language.model import LIMITED_ACTIONS, Pos
from runner.project.config import (
    CEILINGS,
    Config,
    SenderConfig,
    default_config,
    default_limits,
    find_config,
    load_config,
    load_project_config,
    load_schema,
    project_dir,
    resolve_credentials,
)
from runner.providers import CAPABILITIES
from runner.providers.sandbox import INJECTABLE, OPTIONS

GOOD = """\
version: 1
database: state/seqrun.db
senders:
  - name: alice
    provider: sandbox
    account_id: acc-alice
    account_type: classic
    timezone: Europe/Berlin
    profile_id: ACoAAalice
    full_name: Alice Example
    limits: {connect: 20, message: 40}
    credentials_env: {api_key: SALESFLOW_API_KEY}
  - name: bob
    provider: sandbox
    account_id: acc-bob
    account_type: sales_navigator
sandbox:
  seed: 7
  accept_rate: 0.35
  reply_rate: 0.15
"""


def write(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "seqrun.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(tmp_path: pathlib.Path, text: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_config(tmp_path)
    return [d.format() for d in info.value.diagnostics]


SENDER = "version: 1\nsenders:\n  - name: alice\n    provider: sandbox\n    account_id: acc-alice\n"


def test_loads_a_full_config(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD)
    config = load_config(tmp_path / "seqrun.yaml")
    assert config.path == "seqrun.yaml"
    assert config.root == str(tmp_path.resolve())
    assert config.database == str(tmp_path.resolve() / "state" / "seqrun.db")
    assert config.sandbox == {"seed": 7, "accept_rate": 0.35, "reply_rate": 0.15}
    assert config.warnings == ()
    assert config.senders == (
        SenderConfig(name="alice", provider="sandbox", account_id="acc-alice", account_type="classic",
                     timezone="Europe/Berlin", profile_id="ACoAAalice", full_name="Alice Example",
                     limits={"connect": 20, "message": 40}, credentials_env={"api_key": "SALESFLOW_API_KEY"},
                     pos=Pos("seqrun.yaml", 4, 5)),
        SenderConfig(name="bob", provider="sandbox", account_id="acc-bob", account_type="sales_navigator",
                     pos=Pos("seqrun.yaml", 13, 5)),
    )
    assert config.sender_names == ("alice", "bob")
    assert config.sender("bob") is config.senders[1]
    assert config.sender("carol") is None


def test_daily_limits_merge_overrides_into_defaults(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD)
    alice, bob = load_config(tmp_path).senders
    assert alice.daily_limits == {"visit": 80, "connect": 20, "message": 40, "inmail": 20, "withdraw": 40}
    assert bob.daily_limits == {"visit": 500, "connect": 30, "message": 250, "inmail": 20, "withdraw": 40}


def test_default_limits_follow_seed_001() -> None:
    assert default_limits("classic") == {"visit": 80, "connect": 25, "message": 50, "inmail": 20, "withdraw": 40}
    assert default_limits("sales_navigator") == {"visit": 500, "connect": 30, "message": 250, "inmail": 20,
                                                 "withdraw": 40}
    assert tuple(default_limits("classic")) == LIMITED_ACTIONS


def test_database_forms(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    for given, expected in [("sqlite:///x.db", f"sqlite:///{tmp_path.resolve() / 'x.db'}"),
                            ("sqlite:////abs/x.db", "sqlite:////abs/x.db"), ("/abs/y.db", "/abs/y.db"),
                            (":memory:", ":memory:")]:
        write(tmp_path, f"version: 1\ndatabase: '{given}'\n")
        assert load_config(tmp_path).database == expected
    write(tmp_path, "version: 1\n")
    config = load_config(tmp_path)
    assert config.database is None
    assert config.database_url() == str(tmp_path.resolve() / "seqrun.db")
    assert config.database_url("other.db") == "other.db"
    monkeypatch.setenv("SEQRUN_DB", "env.db")
    assert config.database_url() == "env.db"


def test_schema_errors_are_positioned_and_name_senders(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = """\
        version: 1
        databse: x.db
        senders:
          - name: alice
            provider: sandbox
            account_id: acc-alice
            account_type: premium
            limits: {connect: -1, poke: 3}
          - name: Bob
            provider: sandbox
        sandbox: {accept_rate: 1.5}
        """
    assert errors_of(tmp_path, text, monkeypatch) == [
        'seqrun.yaml:2:1: error: databse: unknown key "databse" (expected one of: version, database, senders, retry, '
        'outgoing, sandbox)',
        "seqrun.yaml:7:19: error: senders[name=alice].account_type: expected one of classic, sales_navigator, "
        'got "premium"',
        "seqrun.yaml:8:23: error: senders[name=alice].limits.connect: expected a whole number of at least 0, got -1",
        'seqrun.yaml:8:27: error: senders[name=alice].limits.poke: unknown key "poke" (expected one of: visit, '
        "connect, message, inmail, withdraw)",
        'seqrun.yaml:9:5: error: senders[1]: missing required key "account_id"',
        'seqrun.yaml:9:11: error: senders[1].name: expected a name of lower-case letters, digits, "_" and "-" '
        'starting with a letter, got "Bob"',
        "seqrun.yaml:11:24: error: sandbox.accept_rate: expected a number of at most 1, got 1.5",
    ]


def test_version_is_checked_first(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert errors_of(tmp_path, "version: 2\nbogus: 1\n", monkeypatch) == [
        "seqrun.yaml:1:10: error: version: unsupported version 2; this seqrun reads version 1"]
    assert errors_of(tmp_path, "senders: []\n", monkeypatch) == [
        'seqrun.yaml:1:1: error: missing required key "version"']


def test_yaml_errors_and_non_mapping(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert errors_of(tmp_path, "version: 1\nversion: 1\n", monkeypatch) == [
        'seqrun.yaml:2:1: error: duplicate key "version" (first defined on line 1)']
    assert errors_of(tmp_path, "- a\n", monkeypatch) == [
        'seqrun.yaml:1:1: error: expected a mapping like "version: 1", got a list']


def test_provider_without_driver(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.providers import CAPABILITIES, PROVIDERS

    # A provider the schema knows and this version ships no driver for (whichever that is now).
    missing = sorted(set(CAPABILITIES) - set(PROVIDERS))
    if not missing:
        return
    text = SENDER.replace("sandbox", missing[0])
    assert errors_of(tmp_path, text, monkeypatch) == [
        "seqrun.yaml:4:15: error: "
        f"senders[name=alice].provider: provider {missing[0]} has no driver in this version "
        f"(available: {', '.join(sorted(PROVIDERS))})"]


def test_unknown_timezone_suggests(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert errors_of(tmp_path, SENDER + "    timezone: Europe/Berln\n", monkeypatch) == [
        'seqrun.yaml:6:15: error: senders[name=alice].timezone: unknown time zone "Europe/Berln"; '
        'did you mean "Europe/Berlin"?']
    assert errors_of(tmp_path, SENDER + "    timezone: Mars/Olympus\n", monkeypatch) == [
        'seqrun.yaml:6:15: error: senders[name=alice].timezone: unknown time zone "Mars/Olympus" '
        '(expected an IANA name like "Europe/Berlin")']


def test_duplicate_sender_names(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = SENDER + "  - name: alice\n    provider: sandbox\n    account_id: acc-2\n"
    assert errors_of(tmp_path, text, monkeypatch) == [
        'seqrun.yaml:6:11: error: senders[name=alice].name: sender "alice" is defined twice (first on line 3)']


def test_secret_values_in_the_file_are_refused_and_never_echoed(tmp_path: pathlib.Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk_live_51Habcdefghijklmnop"
    text = SENDER + f"    api_key: {secret}\n    credentials_env: {{token: {secret}, cookie: my-var}}\n"
    out = errors_of(tmp_path, text, monkeypatch)
    assert out == [
        "seqrun.yaml:6:5: error: senders[name=alice].api_key: secrets do not belong in seqrun.yaml; put the value "
        "in an environment variable and name it in the sender's credentials_env, e.g. "
        "credentials_env: {api_key: ALICE_API_KEY}",
        "seqrun.yaml:7:30: error: senders[name=alice].credentials_env.token: this looks like a secret value, not "
        "the name of an environment variable; put the value in an environment variable and write its name here, "
        'like "SALESFLOW_API_KEY" (the value is not shown)',
        "seqrun.yaml:7:67: error: senders[name=alice].credentials_env.cookie: expected the name of an environment "
        'variable: upper-case letters, digits and "_", like "SALESFLOW_API_KEY" (the value is not shown)',
    ]
    assert not any(secret in line for line in out)


def test_credentials_env_must_be_a_mapping(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert errors_of(tmp_path, SENDER + "    credentials_env: sk_live_secret\n", monkeypatch) == [
        "seqrun.yaml:6:22: error: senders[name=alice].credentials_env: expected a mapping of credential names to "
        "environment variable names, like {api_key: SALESFLOW_API_KEY} (the value is not shown)"]


def test_limits_above_documented_ceilings_are_warnings(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, SENDER + "    limits: {connect: 26, message: 50, withdraw: 500}\n")
    config = load_config(tmp_path)
    assert [d.format() for d in config.warnings] == [
        "seqrun.yaml:6:23: warning: senders[name=alice].limits.connect: 26 is above LinkedIn's documented ceiling "
        "of 25 connects a day for classic accounts; the account risks restrictions"]


def test_resolve_credentials_reads_env_and_names_missing_variables() -> None:
    sender = SenderConfig(name="alice", provider="sandbox", account_id="a",
                          credentials_env={"api_key": "ALICE_KEY", "cookie": "ALICE_COOKIE"})
    assert resolve_credentials(sender, {"ALICE_KEY": "k", "ALICE_COOKIE": "c"}) == {"api_key": "k", "cookie": "c"}
    with pytest.raises(UserError) as info:
        resolve_credentials(sender, {"ALICE_KEY": "k", "ALICE_COOKIE": ""})
    assert str(info.value) == ("sender alice: environment variable ALICE_COOKIE (credentials_env.cookie) "
                               "is not set")
    with pytest.raises(UserError) as info:
        resolve_credentials(sender, {})
    assert str(info.value) == ("sender alice: environment variables ALICE_KEY (credentials_env.api_key), "
                               "ALICE_COOKIE (credentials_env.cookie) are not set")


class _Seq:
    def __init__(self, *senders: str) -> None:
        self.senders = senders


def test_default_config_has_one_sandbox_sender_per_listed_name(tmp_path: pathlib.Path) -> None:
    config = default_config([_Seq("bob", "alice"), _Seq("alice")], root=tmp_path)  # type: ignore[list-item]
    assert config == Config(path=None, root=str(tmp_path.resolve()), database=None, senders=(
        SenderConfig(name="alice", provider="sandbox", account_id="alice"),
        SenderConfig(name="bob", provider="sandbox", account_id="bob")))
    assert default_config([_Seq()], root=tmp_path).sender_names == ("sandbox",)  # type: ignore[list-item]


def test_config_is_found_walking_up(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, SENDER)
    (tmp_path / "sequences" / "deep").mkdir(parents=True)
    seq = tmp_path / "sequences" / "deep" / "a.yaml"
    seq.write_text("version: 1\n", encoding="utf-8")
    assert find_config(seq) == tmp_path.resolve() / "seqrun.yaml"
    assert find_config(tmp_path / "sequences" / "deep") == tmp_path.resolve() / "seqrun.yaml"
    monkeypatch.chdir(tmp_path / "sequences")
    assert load_project_config().sender_names == ("alice",)


def test_without_config_the_default_is_used_in_the_start_directory(tmp_path: pathlib.Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    monkeypatch.chdir(bare)
    assert find_config() is None
    assert project_dir() == bare.resolve()
    config = load_project_config(sequences=[_Seq("carol")])  # type: ignore[list-item]
    assert (config.path, config.root, config.sender_names) == (None, str(bare.resolve()), ("carol",))


def test_schema_is_valid_and_matches_registries() -> None:
    schema = load_schema()
    sender = schema["$defs"]["sender"]
    assert sender["properties"]["provider"]["enum"] == list(CAPABILITIES)
    assert tuple(sender["properties"]["limits"]["properties"]) == LIMITED_ACTIONS
    assert sender["properties"]["account_type"]["enum"] == list(CEILINGS)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def walk(node: object) -> None:  # every object schema is closed and every property documented
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert "additionalProperties" in node, node
            for name, sub in node.get("properties", {}).items() if isinstance(node.get("properties"), dict) else ():
                assert "description" in sub, name
            for sub in node.values():
                walk(sub)
        elif isinstance(node, list):
            for sub in node:
                walk(sub)
    walk(schema)
    json.dumps(schema)


def test_sandbox_options(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, """\
        version: 1
        sandbox:
          seed: 3
          accept_delay_hours: [30, 504]
          errors: {STATUS_429: 0.01, AUTH_EXPIRED: 0.001}
          reauth_after_hours: 2.5
          state_path: state/sandbox.db
        """)
    assert load_config(tmp_path).sandbox == {
        "seed": 3, "accept_delay_hours": [30, 504], "errors": {"STATUS_429": 0.01, "AUTH_EXPIRED": 0.001},
        "reauth_after_hours": 2.5, "state_path": str(tmp_path.resolve() / "state" / "sandbox.db")}


def test_sandbox_option_errors(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = """\
        version: 1
        sandbox:
          reply_delay_hours: [1, 2, 3]
          errors: {BOOM: 0.5, TRANSIENT: 2}
          reauth_after_hours: 0
          sede: 1
        """
    assert errors_of(tmp_path, text, monkeypatch) == [
        "seqrun.yaml:3:22: error: sandbox.reply_delay_hours: expected [median, max] in hours, like [30, 504], "
        "got 3 numbers",
        'seqrun.yaml:4:12: error: sandbox.errors.BOOM: unknown key "BOOM" (expected one of: LIMIT_REACHED, '
        "NOT_CONNECTED, ALREADY_CONNECTED, INVITATION_PENDING, PROFILE_NOT_ACCESSIBLE, INVALID_INPUT, AUTH_EXPIRED, "
        "API_KEY_REJECTED, STATUS_429, TRANSIENT, NOT_FOUND)",
        "seqrun.yaml:4:34: error: sandbox.errors.TRANSIENT: expected a number of at most 1, got 2",
        "seqrun.yaml:5:23: error: sandbox.reauth_after_hours: expected a number above 0, got 0",
        'seqrun.yaml:6:3: error: sandbox.sede: unknown key "sede" (expected one of: seed, accept_rate, '
        "accept_delay_hours, reply_rate, reply_decay, reply_delay_hours, connected_rate, pending_rate, messaged_first_rate, "
        "recent_conversation_rate, inaccessible_rate, errors, latency_ms, reauth_after_hours, state_path, sleep_ms)",
    ]


def test_sandbox_schema_matches_the_provider() -> None:
    sandbox = load_schema()["$defs"]["sandbox"]
    assert tuple(sandbox["properties"]) == OPTIONS
    assert sandbox["properties"]["errors"]["propertyNames"]["enum"] == [k.value for k in INJECTABLE]


def test_sandbox_options_that_only_fail_together_are_errors_on_load(tmp_path: pathlib.Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Each value passes the schema; simulate used to refuse them only when it started, without a line.
    text = """\
        version: 1
        sandbox:
          accept_delay_hours: [10, 1]
          connected_rate: 0.9
          pending_rate: 0.2
          errors: {STATUS_429: 0.6, TRANSIENT: 0.5}
        """
    assert errors_of(tmp_path, text, monkeypatch) == [
        "seqrun.yaml:3:23: error: sandbox.accept_delay_hours: the median (10) is above the maximum (1); write "
        "[median, max] in hours",
        "seqrun.yaml:4:3: error: sandbox: inaccessible_rate, connected_rate, pending_rate, messaged_first_rate and "
        "recent_conversation_rate add up to 1.155 (counting the defaults of those not set); together they may not "
        "exceed 1",
        "seqrun.yaml:6:11: error: sandbox.errors: the probabilities add up to 1.1; together they may not exceed 1",
    ]


def test_sandbox_delays_must_be_above_zero(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert errors_of(tmp_path, "version: 1\nsandbox:\n  reply_delay_hours: [0, 5]\n", monkeypatch) == [
        "seqrun.yaml:3:23: error: sandbox.reply_delay_hours[0]: expected a number above 0, got 0"]


def test_retry_budget(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "version: 1\nretry: {budget_hours: 6.5}\n")
    assert load_config(tmp_path).retry_budget_hours == 6.5
    write(tmp_path, "version: 1\n")
    assert load_config(tmp_path).retry_budget_hours == 24.0
    assert errors_of(tmp_path, "version: 1\nretry: {budget_hours: 0, tries: 3}\n", monkeypatch) == [
        "seqrun.yaml:2:23: error: retry.budget_hours: expected a number above 0, got 0",
        'seqrun.yaml:2:26: error: retry.tries: unknown key "tries" (expected one of: budget_hours)',
    ]


def test_a_secret_pasted_where_another_value_belongs_is_not_echoed(tmp_path: pathlib.Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    text = SENDER + "    full_name: 7\n    limits: {connect: sk_live_4eC39HqLyjWDarjtT1zdp7dc}\nsandbox: {seed: ghp_abc123}\n"
    assert errors_of(tmp_path, text, monkeypatch) == [
        "seqrun.yaml:6:16: error: senders[name=alice].full_name: expected text, got 7",
        "seqrun.yaml:7:23: error: senders[name=alice].limits.connect: expected a whole number, got a value that "
        "looks like a secret (not shown)",
        "seqrun.yaml:8:17: error: sandbox.seed: expected a whole number, got a value that looks like a secret "
        "(not shown)",
    ]


def test_sandbox_numbers_must_be_finite(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # YAML's .nan passes every "minimum"/"maximum" of the schema; simulate refused it without a line.
    text = """\
        version: 1
        sandbox:
          reply_rate: .nan
          accept_delay_hours: [.inf, .inf]
          errors: {TRANSIENT: .nan}
          latency_ms: .inf
        """
    assert errors_of(tmp_path, text, monkeypatch) == [
        "seqrun.yaml:3:15: error: sandbox.reply_rate: expected a number, got .nan",
        "seqrun.yaml:4:24: error: sandbox.accept_delay_hours[0]: expected a number, got .inf",
        "seqrun.yaml:4:30: error: sandbox.accept_delay_hours[1]: expected a number, got .inf",
        "seqrun.yaml:5:23: error: sandbox.errors.TRANSIENT: expected a number, got .nan",
        "seqrun.yaml:6:15: error: sandbox.latency_ms: expected a number, got .inf",
    ]


def test_every_number_must_be_finite(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `run` stopped with exit 3 ("cannot convert float NaN to integer") on these.
    assert errors_of(tmp_path, "version: 1\nretry: {budget_hours: .nan}\n", monkeypatch) == [
        "seqrun.yaml:2:23: error: retry.budget_hours: expected a number, got .nan"]
    assert errors_of(tmp_path, "version: 1\nretry: {budget_hours: .inf}\n", monkeypatch) == [
        "seqrun.yaml:2:23: error: retry.budget_hours: expected a number, got .inf"]


def test_a_database_password_in_the_file_is_refused_and_never_echoed(tmp_path: pathlib.Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    text = "version: 1\ndatabase: postgresql://seqrun:hunter2-pw@db.internal/seqrun\n"
    out = errors_of(tmp_path, text, monkeypatch)
    assert out == [
        "seqrun.yaml:2:11: error: database: a password does not belong in seqrun.yaml; remove it from the URL "
        "and give it to Postgres through PGPASSWORD or ~/.pgpass (the value is not shown)"]
    assert not any("hunter2-pw" in line for line in out)


def test_a_database_url_without_a_password_is_kept(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "version: 1\ndatabase: postgresql://seqrun@db.internal/seqrun\n")
    assert load_config(tmp_path).database == "postgresql://seqrun@db.internal/seqrun"


def test_a_database_password_in_the_url_query_is_refused_too(tmp_path: pathlib.Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # libpq takes `?password=...` as well as `user:password@`; both put a secret in the file.
    text = "version: 1\ndatabase: postgresql://seqrun@db.internal/seqrun?sslmode=require&password=hunter2-pw\n"
    out = errors_of(tmp_path, text, monkeypatch)
    assert out == [
        "seqrun.yaml:2:11: error: database: a password does not belong in seqrun.yaml; remove it from the URL "
        "and give it to Postgres through PGPASSWORD or ~/.pgpass (the value is not shown)"]
