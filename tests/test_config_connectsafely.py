"""seqrun.yaml for ConnectSafely senders: the driver is built from the config, with the API key from
the environment, the public API as the default base URL and ConnectSafely's rate per key."""
from __future__ import annotations

import pathlib

import pytest

from runner.language.diagnostics import UserError
from runner.project.config import load_config
from runner.project.discovery import http_driver_options, real_provider_for
from runner.providers.connectsafely.driver import ConnectSafelyProvider

SENDER = """\
version: 1
senders:
  - name: alice
    provider: connectsafely
    account_id: 65fa1c2b3d4e5f6a7b8c9d0e
    credentials_env: {api_key: CONNECTSAFELY_API_KEY}
"""


def test_a_connectsafely_sender_gets_its_driver_the_public_api_and_60_a_minute(tmp_path: pathlib.Path) -> None:
    (tmp_path / "seqrun.yaml").write_text(SENDER, encoding="utf-8")
    config = load_config(tmp_path)
    (sender,) = config.senders
    options = http_driver_options(config, sender)
    assert str(options["client"].base_url) == "https://api.connectsafely.ai/linkedin/"
    assert options["budget"].rate == 1.0  # 60 a minute
    driver = real_provider_for(config)(sender, {"api_key": "cs_live_0123456789"})
    assert isinstance(driver, ConnectSafelyProvider)
    driver.close()


def test_a_connectsafely_sender_without_an_api_key_variable_is_an_error(tmp_path: pathlib.Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "seqrun.yaml").write_text(SENDER.replace("    credentials_env: {api_key: CONNECTSAFELY_API_KEY}\n",
                                                         ""), encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_config(tmp_path)
    assert [d.format() for d in info.value.diagnostics] == [
        "seqrun.yaml:3:5: error: senders[name=alice]: provider connectsafely needs credentials_env with api_key (the "
        "name of the environment variable holding it), e.g. credentials_env: {api_key: CONNECTSAFELY_API_KEY}"]
