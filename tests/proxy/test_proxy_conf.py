"""models.conf's [proxy] section: defaults, ranges, keys and their file, errors at file:line:key."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_mcp.config.models_conf import ConfigError, parse_config
from llm_mcp.config.proxy_conf import DEFAULT_MAX_BODY, ProxySettings, read_api_keys_file


def conf(tmp_path: Path, proxy: str) -> str:
    (tmp_path / "models").mkdir(exist_ok=True)
    return f"[defaults]\nmodels_dir = {tmp_path / 'models'}\n\n[one]\nmodel = one.gguf\n\n[proxy]\n{proxy}"


def parse(tmp_path: Path, proxy: str) -> ProxySettings:
    return parse_config(conf(tmp_path, proxy), tmp_path / "models.conf").proxy


def test_no_section_means_off_with_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    text = f"[defaults]\nmodels_dir = {tmp_path / 'models'}\n\n[one]\nmodel = one.gguf\n"
    settings = parse_config(text, tmp_path / "models.conf").proxy
    assert settings == ProxySettings()
    assert settings.listen is None and settings.queue_limit == 16
    assert settings.max_body_bytes == DEFAULT_MAX_BODY
    assert not settings.keyed and not settings.send_loading_state
    assert settings.wait_limit(60) == 90  # the profile's load_timeout + 30


def test_every_key_is_read(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# team keys\nsk-one\n\nsk-two\n")
    keys.chmod(0o600)
    settings = parse(tmp_path, "listen = 127.0.0.1:8080\napi_keys = sk-a, sk-b\napi_keys_file = keys\n"
                     "queue_limit = 4\nqueue_timeout = 120\nmax_body_bytes = 2048\n"
                     "send_loading_state = yes\n")
    assert settings.listen == "127.0.0.1:8080"
    assert settings.api_keys == ("sk-a", "sk-b")
    assert settings.api_keys_file == keys.resolve()
    assert read_api_keys_file(keys) == ("sk-one", "sk-two")
    assert (settings.queue_limit, settings.queue_timeout, settings.max_body_bytes) == (4, 120.0, 2048)
    assert settings.send_loading_state and settings.keyed and settings.wait_limit(60) == 120


@pytest.mark.parametrize(("line", "words"), [
    ("queue_limit = -1", "out of range"),
    ("queue_limit = many", "not a whole number"),
    ("queue_timeout = 0", "out of range"),
    ("max_body_bytes = 10", "out of range"),
    ("send_loading_state = maybe", "not a boolean"),
    ("listen = 127.0.0.1:http", "not a port"),
    ("listen = 0.0.0.0:8080", "allow_remote"),
    ("api_keys = a,,b", "empty key"),
    ("api_keys = with space", "space"),
    ("api_keys_file = missing", "does not exist"),
    ("queue_size = 3", "unknown key"),
])
def test_a_bad_value_names_file_line_and_key(tmp_path: Path, line: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, f"allow_remote = false\n{line}\n")
    error = caught.value
    assert error.section == "proxy" and error.line == 9 and error.key == line.split(" =", maxsplit=1)[0]
    assert words in error.message
    assert str(error).startswith(f"{tmp_path / 'models.conf'}:9: [proxy] {error.key}: ")


def test_a_remote_listen_address_needs_allow_remote_and_a_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no API key is set"):
        parse(tmp_path, "listen = 0.0.0.0:8080\nallow_remote = true\n")
    text = conf(tmp_path, "listen = 0.0.0.0:8080\nallow_remote = true\napi_keys = sk-remote\n")
    config = parse_config(text, tmp_path / "models.conf")
    assert config.proxy.listen == "0.0.0.0:8080"
    assert any("[proxy] listen" in w and "0.0.0.0" in w for w in config.warnings)


def test_a_key_file_others_can_read_is_refused_not_quietly_tightened(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("sk-one\n")
    keys.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 644\).*rotate"):
        parse(tmp_path, "api_keys_file = keys\n")
    assert keys.stat().st_mode & 0o777 == 0o644
    keys.chmod(0o600)
    assert parse(tmp_path, "api_keys_file = keys\n").api_keys_file == keys.resolve()
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    empty.chmod(0o600)
    with pytest.raises(ConfigError, match="holds no key"):
        parse(tmp_path, "api_keys_file = empty\n")
