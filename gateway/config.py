"""The gateway's configuration file (TOML).

```toml
data_dir = "data"                      # relative to this file's directory

[storage]
url = "postgresql+asyncpg://directgw@db/directgw"   # default: SQLite in data_dir
```

``Config`` holds what every part needs (where data lives, which database);
each other table is handed raw, through ``section``, to the module that owns
it, so adding a setting never touches this file. Only the command line reads
the environment (``$DIRECTGW_CONFIG``), never this module.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

DEFAULT_CONFIG_NAME = "directgw.toml"
DEFAULT_DATA_DIR = "data"
DATABASE_FILE = "directgw.db"


class ConfigError(Exception):
    """A configuration file that cannot be used: which file, which key, why."""

    def __init__(self, path: Path, key: str | None, detail: str) -> None:
        self.path = path
        self.key = key
        self.detail = detail
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"{where}: {detail}")


@dataclass(frozen=True)
class Config:
    path: Path
    """The file this came from (absolute)."""
    data_dir: Path
    storage_url: str
    tables: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def section(self, name: str) -> dict[str, Any]:
        """The raw ``[name]`` table (empty when absent), for the module that owns it."""
        value = self.tables.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(self.path, name, "expected a table")
        return dict(value)


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / DATABASE_FILE}"


def parse_config(text: str, path: Path) -> Config:
    """A ``Config`` from TOML text; relative paths resolve against ``path``'s directory."""
    path = path.absolute()
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from exc
    base = path.parent
    raw_dir = tables.get("data_dir", DEFAULT_DATA_DIR)
    if not isinstance(raw_dir, str) or not raw_dir:
        raise ConfigError(path, "data_dir", "expected a directory path")
    data_dir = (base / Path(raw_dir).expanduser()).resolve()
    storage = tables.get("storage", {})
    if not isinstance(storage, dict):
        raise ConfigError(path, "storage", "expected a table")
    url = storage.get("url", sqlite_url(data_dir))
    if not isinstance(url, str) or not url:
        raise ConfigError(path, "storage.url", "expected a database URL")
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            path, "storage.url", "use sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB"
        )
    url = _absolute_sqlite(url, base)
    return Config(path, data_dir, url, MappingProxyType(tables))


def _absolute_sqlite(url: str, base: Path) -> str:
    """``sqlite+aiosqlite:///relative.db`` means relative to the config file, not the cwd."""
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix):
        file = url[len(prefix) :]
        if file and not file.startswith("/") and not file.startswith(":memory:"):
            return prefix + str((base / file).resolve())
    return url


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, "no such file (run `directgw init` or pass --config)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"cannot read: {exc}") from exc
    return parse_config(text, path)


def starter_config(
    domain: str, data_dir: str, storage_url: str | None = None, *, nameservers: Sequence[str] = (),
    tls_files: tuple[str, str] | None = None,
) -> str:
    """What ``directgw init`` writes. ``nameservers`` (the system's, from
    resolv.conf) fill ``[discovery]``; with none, the table is written
    commented out, to be completed. ``tls_files`` (certificate, key) are the
    STARTTLS pair ``init`` generated for ``[smtp]``."""
    servers = ", ".join(_toml_string(s) for s in nameservers)
    discovery = (
        "[discovery]\n"
        "# the system's resolvers when init ran (/etc/resolv.conf); DNS CERT and SRV lookups go here\n"
        + (f"nameservers = [{servers}]\n" if nameservers else '# nameservers = ["127.0.0.1:53"]\n')
    )
    url = (
        f"url = {_toml_string(storage_url)}\n"
        if storage_url
        else '# url = "postgresql+asyncpg://directgw@127.0.0.1/directgw"\n'
    )
    return (
        "# directgw configuration (see docs/storage.md and docs/trust.md)\n"
        f"data_dir = {_toml_string(data_dir)}\n"
        "\n"
        "[storage]\n"
        "# default: SQLite in data_dir; for several nodes use PostgreSQL:\n"
        + url +
        "\n"
        f"# local domains and their keys live in the database: directgw domains list\n"
        f"# (created for {domain})\n"
        "\n"
        "[trust]\n"
        '# revocation_unknown = "temporary"\n'
        "\n"
        + discovery
        + "\n"
        "[smtp]\n"
        "# directgw serve: where Direct mail arrives (ports under 1024 need CAP_NET_BIND_SERVICE)\n"
        'listen = "0.0.0.0:25"\n'
        + (
            "# a self-signed pair made by init: STARTTLS on port 25 is opportunistic (RFC 7672 2.1);\n"
            "# replace it with a certificate from a CA when you have one\n"
            f"tls_certificate = {_toml_string(tls_files[0])}\ntls_key = {_toml_string(tls_files[1])}\n"
            if tls_files
            else '# tls_certificate = "tls/smtp.crt"\n# tls_key = "tls/smtp.key"\n'
        )
        + "\n"
        "[http]\n"
        "# /healthz and /metrics; keep it off the internet\n"
        'listen = "127.0.0.1:8025"\n'
        "\n"
        "# EHRs submit plain mail on port 587 (STARTTLS + AUTH, uses the [smtp] TLS pair;\n"
        "# accounts: directgw accounts add NAME --domain DOMAIN). Uncomment to turn it on:\n"
        "# [submission]\n"
        '# listen = "0.0.0.0:587"\n'
        "# max_auth_failures = 5       # failed logins from one address within the window...\n"
        "# auth_failure_window = 900   # ...of this many seconds lock it out...\n"
        "# auth_lockout = 900          # ...for this many seconds\n"
    )


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
