"""The ``accounts`` commands (registered in ``accounts``).

A password is hashed (argon2id) before the database is opened and never
stored or logged in clear. A generated one is printed once, on stdout, and
cannot be shown again: ``accounts passwd`` sets a new one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.accounts import (
    AccountError,
    AccountProblem,
    Accounts,
    PasswordRefused,
    account_name,
    chosen_password,
    generate_password,
    hash_password,
)
from gateway.domains import LocalDomains
from gateway.store import Store

from .admin.common import AdminError, AdminUsageError, domain_arg, print_json, run, utc_now


def _password(path: Path | None) -> tuple[str, bool]:
    """(the password, whether it was generated)."""
    if path is None:
        return generate_password(), True
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AdminError(f"--password-file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise AdminError(f"--password-file {path}: cannot read it: {exc.strerror}") from exc
    try:
        return chosen_password(text), False
    except PasswordRefused as exc:
        raise AdminError(f"--password-file {path}: {exc}") from exc


def _name(text: str) -> str:
    try:
        return account_name(text)
    except AccountError as exc:
        raise AdminUsageError(str(exc)) from exc


def _failed(exc: AccountError) -> AdminError:
    return AdminError(str(exc))


def cmd_add(args: argparse.Namespace) -> int:
    prepared: dict[str, object] = {}

    def check() -> None:
        prepared["name"] = _name(args.name)
        prepared["domain"] = domain_arg(args.domain)
        password, generated = _password(args.password_file)
        prepared["generated"] = password if generated else None
        prepared["hash"] = hash_password(password)  # CPU-heavy: before any event loop runs

    async def body(store: Store) -> int:
        name, domain = str(prepared["name"]), str(prepared["domain"])
        ours = await LocalDomains(store).names()
        if domain not in ours:
            raise AdminError(f"{domain} is not a local domain ({', '.join(sorted(ours)) or 'none yet: domains add'})")
        try:
            account = await Accounts(store).add(name, domain, str(prepared["hash"]), at=utc_now())
        except AccountError as exc:
            raise _failed(exc) from exc
        print(f"account {account.name} added: sends from addresses of {account.domain}")
        generated = prepared["generated"]
        if generated is not None:
            print(f"password (shown once, store it in the EHR now): {generated}")
        return 0

    return run(args, body, check)


def cmd_list(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        accounts = await Accounts(store).all()
        if args.json:
            print_json([{"name": a.name, "domain": a.domain, "created_at": a.created_at.isoformat(),
                         "password_changed_at": a.password_changed_at.isoformat()} for a in accounts])
            return 0
        if not accounts:
            print("no accounts (accounts add NAME --domain DOMAIN)")
        for a in accounts:
            print(f"{a.name}\t{a.domain}\tcreated {a.created_at:%Y-%m-%d %H:%M}\t"
                  f"password set {a.password_changed_at:%Y-%m-%d %H:%M}")
        return 0

    return run(args, body)


def cmd_remove(args: argparse.Namespace) -> int:
    names: list[str] = []

    async def body(store: Store) -> int:
        try:
            await Accounts(store).remove(names[0])
        except AccountError as exc:
            raise _failed(exc) from exc
        print(f"account {names[0]} removed")
        return 0

    return run(args, body, lambda: names.append(_name(args.name)))


def cmd_passwd(args: argparse.Namespace) -> int:
    prepared: dict[str, object] = {}

    def check() -> None:
        prepared["name"] = _name(args.name)
        password, generated = _password(args.password_file)
        prepared["generated"] = password if generated else None
        prepared["hash"] = hash_password(password)

    async def body(store: Store) -> int:
        name = str(prepared["name"])
        try:
            await Accounts(store).set_password(name, str(prepared["hash"]), at=utc_now())
        except AccountError as exc:
            if exc.problem is AccountProblem.NO_SUCH_ACCOUNT:
                raise AdminError(f"no account named {name} (accounts list)") from exc
            raise _failed(exc) from exc
        print(f"password of {name} changed")
        generated = prepared["generated"]
        if generated is not None:
            print(f"password (shown once, store it in the EHR now): {generated}")
        return 0

    return run(args, body, check)


__all__ = ["cmd_add", "cmd_list", "cmd_passwd", "cmd_remove"]
