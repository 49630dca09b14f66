"""The ``[bridge]`` table: where the bridge listens, the URL it is reached at,
and its secrets.

```toml
[bridge]
listen = "127.0.0.1:8443"                 # default: the bridge does not run inside `serve`
base_url = "https://records.example"      # what links, metadata and redirects say (default http://LISTEN)
cookie_secure = true                      # false only for plain-HTTP loopback tests
key_file = "bridge.key"                   # 32 random bytes, made 0600 on first start (default data_dir/bridge.key)
admin_token_file = "admin.token"          # the admin HTTP API's bearer token (0600); without it the API refuses every call
```

Every secret the bridge needs (cookie and CSRF MACs, the connect-code
pepper, client-secret MACs) is derived from the one key file with
HMAC-SHA256 and a purpose label, so rotating that file rotates them all and
nothing secret lives in the configuration or in code.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.service.settings import Listen, ServeSettingsError, parse_listen
from records_bridge.admin.token import AdminTokenError, load_admin_token

KEY_BYTES = 32
"""256 bits: HMAC-SHA256 keys gain nothing from more (RFC 2104 section 3)."""
KEY_FILE = "bridge.key"

_KEYS = {"listen", "base_url", "cookie_secure", "key_file", "admin_token_file"}


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    base_url: str
    """Scheme, host and port, no trailing slash: what links and the metadata documents say."""
    key: bytes = field(repr=False)
    """The master secret; use ``secret(purpose)``, never this directly."""
    cookie_secure: bool = True
    listen: Listen | None = None
    admin_token_sha256: bytes | None = field(default=None, repr=False)
    """SHA-256 of the admin API's token (``admin_token_file``, records_bridge.admin.token); None: no admin API."""

    def secret(self, purpose: str) -> bytes:
        """A key for one purpose (e.g. "csrf", "connect-code-pepper"), independent of every other."""
        return hmac.new(self.key, b"records-bridge|" + purpose.encode(), hashlib.sha256).digest()

    @property
    def issuer(self) -> str:
        return self.base_url


def load_key(path: Path) -> bytes:
    """The key in ``path``, created (0600, never replaced) when absent."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        data = path.read_bytes()
        if len(data) != KEY_BYTES:
            raise ServeSettingsError("[bridge] key_file", f"{path}: expected {KEY_BYTES} bytes, found {len(data)}") from None
        return data
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


def bridge_table(tables: Mapping[str, Any]) -> dict[str, Any]:
    value = tables.get("bridge", {})
    if not isinstance(value, dict):
        raise ServeSettingsError("[bridge]", "expected a table")
    unknown = set(value) - _KEYS
    if unknown:
        raise ServeSettingsError(f"[bridge] {sorted(unknown)[0]}", f"unknown setting (known: {', '.join(sorted(_KEYS))})")
    return dict(value)


def bridge_settings(table: Mapping[str, Any], *, base: Path, data_dir: Path,
                    listen_override: str | None = None) -> BridgeSettings:
    """Settings from the raw ``[bridge]`` table; reads (or creates) the key file."""
    raw_listen = listen_override if listen_override is not None else table.get("listen")
    listen = None if raw_listen in (None, "", "off") else parse_listen("[bridge] listen", raw_listen)
    secure = table.get("cookie_secure", True)
    if not isinstance(secure, bool):
        raise ServeSettingsError("[bridge] cookie_secure", "expected true or false")
    base_url = table.get("base_url")
    if base_url is None:
        base_url = f"http://{listen}" if listen is not None else "http://127.0.0.1"
    if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
        raise ServeSettingsError("[bridge] base_url", f"{base_url!r}: expected an http(s) URL such as https://records.example")
    key_file = table.get("key_file", None)
    if key_file is not None and not isinstance(key_file, str):
        raise ServeSettingsError("[bridge] key_file", "expected a file path")
    path = base / key_file if key_file else data_dir / KEY_FILE
    try:
        key = load_key(path)
    except OSError as exc:
        raise ServeSettingsError("[bridge] key_file", f"{path}: {exc.strerror}") from exc
    admin_file = table.get("admin_token_file")
    admin_token = None
    if admin_file is not None:
        if not isinstance(admin_file, str):
            raise ServeSettingsError("[bridge] admin_token_file", "expected a file path")
        try:
            admin_token = load_admin_token(base / admin_file)
        except AdminTokenError as exc:
            raise ServeSettingsError("[bridge] admin_token_file", str(exc)) from exc
    return BridgeSettings(base_url=base_url.rstrip("/"), key=key, cookie_secure=secure, listen=listen,
                          admin_token_sha256=admin_token)


DEFAULT_LISTEN = "127.0.0.1:8080"
"""``directgw bridge`` without ``[bridge] listen``: loopback, behind the TLS-terminating proxy that serves base_url."""


def settings_from_config(config: Any, *, listen_override: str | None = None, default_listen: str | None = None
                         ) -> BridgeSettings:
    """The bridge's settings from a loaded ``gateway.config.Config``."""
    table = bridge_table(config.tables)
    if listen_override is None and "listen" not in table and default_listen is not None:
        listen_override = default_listen
    return bridge_settings(table, base=config.path.parent, data_dir=config.data_dir, listen_override=listen_override)
