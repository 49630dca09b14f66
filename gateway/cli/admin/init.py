"""``directgw init``: a starter configuration and a migrated database.

The configuration file is written last, and atomically (a temporary file
linked into place, which fails rather than replaces when the name is taken):
a failed ``init`` (the database unreachable, a directory not writable) leaves
no ``directgw.toml`` behind to block the retry, and two ``init`` runs at once
cannot both win. The database step is idempotent, so a retry simply
continues.

The starter file's ``[discovery]`` table names the system's resolvers
(``/etc/resolv.conf``), so ``directgw discover`` works out of the box.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from gateway.config import parse_config, starter_config
from gateway.discovery.settings import RESOLV_CONF
from gateway.domains import LocalDomains
from gateway.store import open_store

from ..discover import system_resolvers
from .common import AdminError, config_path, domain_arg, guard, utc_now


def _write_new(path: Path, text: str) -> None:
    """Create ``path`` holding ``text`` in one step, never replacing a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise AdminError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the configuration holds no secret
        os.link(tmp, path)  # fails with EEXIST rather than replacing
    except FileExistsError:
        raise AdminError(f"{path} already exists; edit it, or give another --config") from None
    except OSError as exc:
        raise AdminError(f"cannot write {path}: {exc.strerror}") from exc
    finally:
        os.unlink(tmp)


def _write_tls_pair(cert: Path, key: Path, domain: str) -> None:
    """A self-signed STARTTLS pair for ``serve`` (kept if one is already there: a retried init)."""
    from gateway.smtp.tls import self_signed

    if cert.exists() and key.exists():
        return
    pem, key_pem = self_signed(f"mx.{domain}", utc_now())
    try:
        cert.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        cert.write_bytes(pem)
    except OSError as exc:
        raise AdminError(f"cannot write the STARTTLS pair in {cert.parent}: {exc.strerror}") from exc


def cmd_init(args: argparse.Namespace) -> int:
    def body() -> int:
        path = config_path(args)
        domain = domain_arg(args.domain)
        if path.exists():
            raise AdminError(f"{path} already exists; edit it, or give another --config")
        nameservers = system_resolvers()
        data_dir = args.data_dir or "data"
        tls_files = (f"{data_dir}/tls/smtp.crt", f"{data_dir}/tls/smtp.key")
        text = starter_config(domain, data_dir, args.storage_url, nameservers=nameservers, tls_files=tls_files)
        config = parse_config(text, path)  # a bad --storage-url fails before anything is created
        try:
            # the database holds private keys: only the gateway's user may enter
            config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise AdminError(f"cannot create {config.data_dir}: {exc.strerror}") from exc
        _write_tls_pair(config.path.parent / tls_files[0], config.path.parent / tls_files[1], domain)

        async def go() -> None:
            store = await open_store(config.storage_url)
            try:
                await LocalDomains(store).create(domain, at=utc_now())
            finally:
                await store.close()

        asyncio.run(go())
        _write_new(path, text)
        print(f"wrote {path}")
        print(f"database ready: {config.storage_url}")
        if nameservers:
            print(f"discovery asks the system's resolvers: {', '.join(nameservers)} (from {RESOLV_CONF})")
        else:
            print(f"warning: {RESOLV_CONF} names no resolver: set [discovery] nameservers in {path}")
        print(f"STARTTLS: a self-signed certificate for mx.{domain} in {tls_files[0]} (replace it with a CA's)")
        print(f"local domain {domain} created; next: directgw domains add {domain} --cert C --key K")
        return 0

    return guard(body)
