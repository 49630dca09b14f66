from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config, sqlite_url, starter_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "etc" / "directgw.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_resolve_against_the_config_file(tmp_path):
    config = load_config(write(tmp_path, ""))
    assert config.path == tmp_path / "etc" / "directgw.toml"
    assert config.data_dir == tmp_path / "etc" / "data"
    assert config.storage_url == f"sqlite+aiosqlite:///{tmp_path}/etc/data/directgw.db"


def test_relative_data_dir_and_sqlite_file(tmp_path):
    config = load_config(write(tmp_path, 'data_dir = "../var"\n[storage]\nurl = "sqlite+aiosqlite:///db/x.db"\n'))
    assert config.data_dir == tmp_path / "var"
    assert config.storage_url == f"sqlite+aiosqlite:///{tmp_path}/etc/db/x.db"


def test_postgres_url_kept(tmp_path):
    url = "postgresql+asyncpg://directgw@db.example/directgw"
    assert load_config(write(tmp_path, f'[storage]\nurl = "{url}"\n')).storage_url == url


def test_sections_are_raw_tables_for_their_owners(tmp_path):
    config = load_config(write(tmp_path, '[trust]\nallow_sha1 = true\n[trust.domains."a.test"]\nmin_rsa_bits = 3072\n'))
    assert config.section("trust") == {"allow_sha1": True, "domains": {"a.test": {"min_rsa_bits": 3072}}}
    assert config.section("discovery") == {}


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("data_dir = [", None, "not valid TOML"),
        ("data_dir = 3", "data_dir", "directory"),
        ('[storage]\nurl = "mysql://x"', "storage.url", "sqlite+aiosqlite"),
        ("storage = 1", "storage", "table"),
    ],
    ids=["toml", "data-dir", "url-scheme", "storage-not-table"],
)
def test_bad_files_name_the_key(tmp_path, text, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.key == key
    assert words in str(err.value)
    assert str(tmp_path) in str(err.value)


def test_section_that_is_not_a_table(tmp_path):
    config = load_config(write(tmp_path, "trust = 1\n"))
    with pytest.raises(ConfigError, match="trust: expected a table"):
        config.section("trust")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="directgw init"):
        load_config(tmp_path / "nope.toml")


def test_starter_config_parses(tmp_path):
    config = parse_config(starter_config("a.test", "state"), tmp_path / "directgw.toml")
    assert config.data_dir == tmp_path / "state"
    assert config.storage_url == sqlite_url(tmp_path / "state")
    assert config.section("trust") == {}


@pytest.mark.parametrize(
    ("nameservers", "section"),
    [(["10.0.0.53:53", "[::1]:53"], {"nameservers": ["10.0.0.53:53", "[::1]:53"]}), ([], {})],
    ids=["system-resolvers", "none-found"],
)
def test_starter_config_writes_the_discovery_table(tmp_path, nameservers, section):
    text = starter_config("a.test", "data", nameservers=nameservers)
    assert "[discovery]" in text
    assert parse_config(text, tmp_path / "directgw.toml").section("discovery") == section
