"""EHR accounts and the lockout of client addresses: the rule (pure vectors), the
tables on SQLite and PostgreSQL, and the authenticator the submission edge asks."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from gateway.accounts import (
    AccountAuthenticator,
    AccountError,
    AccountProblem,
    Accounts,
    FailureCount,
    LockoutPolicy,
    Lockouts,
    PasswordRefused,
    after_failure,
    chosen_password,
    client_key,
    generate_password,
    hash_password,
    lockout_policy,
    verify_password,
)
from gateway.accounts.lockout import LockoutSettingError
from gateway.domains import LocalDomains
from gateway.smtp.interface import Authenticated, AuthRefusal, Credentials
from gateway.store import open_store
from tests.pki import NOW
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- SQLite and PostgreSQL

POLICY = LockoutPolicy(max_failures=3, window=timedelta(minutes=10), lock_for=timedelta(minutes=15))
MIN = timedelta(minutes=1)
PASSWORD = "correct horse battery staple"


# -- the rule --

@pytest.mark.parametrize(
    ("previous", "after", "expected"),
    [
        pytest.param(None, 0, FailureCount(1, NOW), id="first-failure-opens-a-window"),
        pytest.param(FailureCount(1, NOW), 5, FailureCount(2, NOW), id="second-in-the-window-counts"),
        pytest.param(FailureCount(2, NOW), 9, FailureCount(0, NOW + 9 * MIN, NOW + 24 * MIN),
                     id="third-in-the-window-locks-for-15-minutes"),
        pytest.param(FailureCount(2, NOW), 10, FailureCount(1, NOW + 10 * MIN), id="window-passed-starts-again"),
        pytest.param(FailureCount(0, NOW, NOW + 15 * MIN), 3, FailureCount(0, NOW, NOW + 15 * MIN),
                     id="locked-stays-locked-and-is-not-extended"),
        pytest.param(FailureCount(0, NOW, NOW + 15 * MIN), 15, FailureCount(1, NOW + 15 * MIN),
                     id="after-the-lock-a-fresh-count"),
    ],
)
def test_lockout_rule(previous, after, expected):
    assert after_failure(previous, NOW + after * MIN, POLICY) == expected


def test_a_lock_always_ends():
    state = None
    for minute in range(0, 120):  # a client failing every minute for two hours
        at = NOW + minute * MIN
        if state is None or not state.locked(at):
            state = after_failure(state, at, POLICY)
        assert state.locked_until is None or state.locked_until - at <= POLICY.lock_for


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("unknown", "unknown"),
    ],
)
def test_clients_are_counted_by_address_ipv6_by_its_64(peer, key):
    assert client_key(peer) == key


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({}, LockoutPolicy()),
        ({"max_auth_failures": 3, "auth_failure_window": 60, "auth_lockout": 120},
         LockoutPolicy(3, timedelta(seconds=60), timedelta(seconds=120))),
    ],
)
def test_lockout_settings(table, expected):
    assert lockout_policy(table) == expected
    assert LockoutPolicy() == LockoutPolicy(5, timedelta(minutes=15), timedelta(minutes=15))


@pytest.mark.parametrize(
    "table",
    [{"max_auth_failures": 0}, {"max_auth_failures": 2.5}, {"auth_lockout": -1}, {"auth_failure_window": "1h"},
     {"auth_lockout": True}],
)
def test_lockout_settings_refused(table):
    with pytest.raises(LockoutSettingError) as err:
        lockout_policy(table)
    assert err.value.key == next(iter(table))


# -- passwords --

def test_the_hash_is_argon2id_and_verifies():
    encoded = hash_password(PASSWORD)
    assert encoded.startswith("$argon2id$") and PASSWORD not in encoded
    assert verify_password(encoded, PASSWORD.encode())
    assert not verify_password(encoded, b"correct horse battery stapler")
    assert not verify_password("not a hash", PASSWORD.encode())


def test_generated_passwords_are_long_and_differ():
    first, second = generate_password(), generate_password()
    assert first != second and len(first) >= 32
    assert chosen_password(first) == first


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        (PASSWORD + "\n", None),
        (PASSWORD + "\r\n\n", None),
        ("short\n", "at least 15"),
        ("x" * 257, "at most 256"),
        (PASSWORD + "\nsecond line\n", "one line"),
        ("a\x00" + PASSWORD, "control"),
        ("", "at least 15"),
    ],
    ids=["line", "crlf", "short", "long", "two-lines", "nul", "empty"],
)
def test_a_chosen_password(text, refused):
    if refused is None:
        assert chosen_password(text) == PASSWORD
        return
    with pytest.raises(PasswordRefused, match=refused) as err:
        chosen_password(text)
    assert PASSWORD not in str(err.value)


# -- the tables --

async def _domain(store, name="hospital.test"):
    await LocalDomains(store).create(name, at=NOW)


async def test_accounts_add_list_passwd_remove(store):
    await _domain(store)
    accounts = Accounts(store)
    added = await accounts.add("EHR-North", "Hospital.Test", hash_password(PASSWORD), at=NOW)
    assert (added.name, added.domain) == ("ehr-north", "hospital.test")
    assert [a.name for a in await accounts.all()] == ["ehr-north"]
    stored = await accounts.login("ehr-north")
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in repr(stored)
    with pytest.raises(AccountError) as err:
        await accounts.add("ehr-north", "hospital.test", hash_password(PASSWORD), at=NOW)
    assert err.value.problem is AccountProblem.EXISTS
    await accounts.set_password("ehr-north", hash_password("another long password"), at=NOW + MIN)
    (listed,) = await accounts.all()
    assert listed.password_changed_at == NOW + MIN and listed.created_at == NOW
    await accounts.remove("ehr-north")
    assert await accounts.all() == [] and await accounts.login("ehr-north") is None
    with pytest.raises(AccountError) as err:
        await accounts.remove("ehr-north")
    assert err.value.problem is AccountProblem.NO_SUCH_ACCOUNT


@pytest.mark.parametrize(
    ("name", "domain", "problem"),
    [
        ("ehr", "elsewhere.test", AccountProblem.NO_SUCH_DOMAIN),
        ("has space", "hospital.test", AccountProblem.BAD_NAME),
        ("", "hospital.test", AccountProblem.BAD_NAME),
        ("x" * 65, "hospital.test", AccountProblem.BAD_NAME),
        ("-dash", "hospital.test", AccountProblem.BAD_NAME),
    ],
)
async def test_an_account_is_refused(store, name, domain, problem):
    await _domain(store)
    with pytest.raises(AccountError) as err:
        await Accounts(store).add(name, domain, hash_password(PASSWORD), at=NOW)
    assert err.value.problem is problem


async def test_removing_the_domain_removes_its_accounts(store):
    await _domain(store)
    await Accounts(store).add("ehr", "hospital.test", hash_password(PASSWORD), at=NOW)
    await LocalDomains(store).remove("hospital.test")
    assert await Accounts(store).all() == []


async def test_lockout_in_the_database(store):
    lockouts = Lockouts(store, POLICY)
    for minute in range(2):
        count = await lockouts.failed("192.0.2.7", NOW + minute * MIN)
        assert not count.locked(NOW + minute * MIN)
    assert not await lockouts.locked("192.0.2.7", NOW + 2 * MIN)
    count = await lockouts.failed("192.0.2.7", NOW + 2 * MIN)
    assert count.locked_until == NOW + 17 * MIN
    assert await lockouts.locked("192.0.2.7", NOW + 16 * MIN)
    assert not await lockouts.locked("192.0.2.8", NOW + 16 * MIN)  # only that address
    assert not await lockouts.locked("192.0.2.7", NOW + 17 * MIN)  # and only for a while
    await lockouts.failed("192.0.2.7", NOW + 18 * MIN)
    await lockouts.succeeded("192.0.2.7")  # a login clears the count
    assert await lockouts.state("192.0.2.7") is None


async def test_two_nodes_count_the_same_failures(store_url):
    """Two stores on one database (two nodes, or two worker processes) failing one
    address at once: every failure counts, and both see the lock."""
    first, second = await open_store(store_url), await open_store(store_url)
    try:
        policy = LockoutPolicy(max_failures=8)
        a, b = Lockouts(first, policy), Lockouts(second, policy)
        await asyncio.gather(*(node.failed("198.51.100.1", NOW) for _ in range(3) for node in (a, b)))
        state = await a.state("198.51.100.1")
        assert state is not None and state.failures == 6
        await asyncio.gather(a.failed("198.51.100.1", NOW), b.failed("198.51.100.1", NOW))
        assert await a.locked("198.51.100.1", NOW + MIN) and await b.locked("198.51.100.1", NOW + MIN)
    finally:
        await first.close()
        await second.close()


async def test_stale_rows_are_purged(store):
    lockouts = Lockouts(store, POLICY)
    await lockouts.failed("192.0.2.1", NOW)
    await lockouts.failed("192.0.2.2", NOW + 16 * MIN)  # the first is older than window and lock
    assert await lockouts.state("192.0.2.1") is None
    assert await lockouts.state("192.0.2.2") is not None


# -- the authenticator --

class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self):
        return self.now


async def test_the_authenticator(store):
    await _domain(store)
    accounts = Accounts(store)
    await accounts.add("ehr", "hospital.test", hash_password(PASSWORD), at=NOW)
    clock = Clock()
    auth = AccountAuthenticator(accounts, Lockouts(store, POLICY), clock)
    good, bad = Credentials("EHR", PASSWORD.encode()), Credentials("ehr", b"wrong password")
    assert await auth.authenticate("192.0.2.7", good) == Authenticated("ehr")
    assert await auth.authenticate("192.0.2.7", bad) is AuthRefusal.INVALID
    assert await auth.authenticate("192.0.2.7", Credentials("nobody", b"x")) is AuthRefusal.INVALID
    assert await auth.authenticate("192.0.2.7", good) == Authenticated("ehr")  # success resets the count
    for _ in range(3):
        assert await auth.authenticate("192.0.2.7", bad) is AuthRefusal.INVALID
    # locked: even the right password is refused, without being checked
    assert await auth.authenticate("192.0.2.7", good) is AuthRefusal.LOCKED_OUT
    assert await auth.authenticate("192.0.2.8", good) == Authenticated("ehr")
    clock.now = NOW + 15 * MIN
    assert await auth.authenticate("192.0.2.7", good) == Authenticated("ehr")


async def test_the_authenticator_with_the_database_away(tmp_path):
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}")
    await store.close()
    (tmp_path / "gw.db").unlink()
    (tmp_path / "gw.db").mkdir()  # the file is now a directory: every query fails
    auth = AccountAuthenticator(Accounts(store), Lockouts(store, POLICY), Clock())
    assert await auth.authenticate("192.0.2.7", Credentials("ehr", b"pw")) is AuthRefusal.UNAVAILABLE
    await store.close()
