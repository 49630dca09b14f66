"""``directgw init``: a starter configuration and a migrated database."""

from __future__ import annotations

import argparse
import asyncio

from gateway.config import (
    parse_config,
    starter_config,
)
from gateway.domains import LocalDomains
from gateway.store import open_store

from .common import (
    AdminError,
    config_path,
    domain_arg,
    guard,
    utc_now,
)


def cmd_init(args: argparse.Namespace) -> int:
    def body() -> int:
        path = config_path(args)
        domain = domain_arg(args.domain)
        if path.exists():
            raise AdminError(f"{path} already exists; edit it, or give another --config")
        text = starter_config(domain, args.data_dir or "data", args.storage_url)
        config = parse_config(text, path)  # a bad --storage-url fails before anything is written
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise AdminError(f"cannot write {path}: {exc.strerror}") from exc
        try:
            # the database holds private keys: only the gateway's user may enter
            config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise AdminError(f"cannot create {config.data_dir}: {exc.strerror}") from exc

        async def go() -> None:
            store = await open_store(config.storage_url)
            try:
                await LocalDomains(store).create(domain, at=utc_now())
            finally:
                await store.close()

        asyncio.run(go())
        print(f"wrote {path}")
        print(f"database ready: {config.storage_url}")
        print(f"local domain {domain} created; next: directgw domains add {domain} --cert C --key K")
        return 0

    return guard(body)
