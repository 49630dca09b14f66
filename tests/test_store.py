"""The storage layer on both databases: migrations from empty, the schema
they build matching schema.py, time round trips, and the anchors table as
the trust engine sees it."""

import contextlib
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import UniqueConstraint, inspect, select

from anchors.source import Direction
from anchors.store import DbAnchors
from gateway.accounts import schema as accounts_schema  # noqa: F401 -- its tables join schema.metadata
from gateway.domains import LocalDomains
from gateway.monitor import schema as monitor_schema  # noqa: F401 -- its tables join schema.metadata
from gateway.store import StoreError, StoreProblem, head_revision, open_store, schema
from records_bridge import schema as records_schema  # noqa: F401 -- its tables join schema.metadata
from records_bridge.connect import schema as connect_schema  # noqa: F401 -- its tables join schema.metadata
from records_bridge.oauth import schema as oauth_schema  # noqa: F401 -- its tables join schema.metadata
from records_bridge.packages import schema as packages_schema  # noqa: F401 -- its tables join schema.metadata
from tests.pki import NOW, hisp
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures
from trust import Check, Purpose, build_trust_service

AT = NOW


async def test_migrates_from_empty_and_again(store_url):
    first = await open_store(store_url)
    try:
        assert await first.revision() == head_revision() == "0011"
    finally:
        await first.close()
    second = await open_store(store_url)  # already at head: nothing to do, nothing lost
    try:
        assert await second.revision() == head_revision()
    finally:
        await second.close()


@contextlib.asynccontextmanager
async def _migrated_to(store_url: str, revision: str):
    """A transaction on a database migrated only as far as ``revision``: what a later
    migration meets, filled by the test before it is opened again (to head)."""
    old = await open_store(store_url, migrate=False)
    try:
        async with old.engine.begin() as conn:
            await conn.run_sync(_upgrade_to, revision)
            yield conn
    finally:
        await old.close()


def _upgrade_to(conn, revision: str) -> None:
    """An empty database migrated only as far as ``revision``: the data a later migration meets."""
    from alembic import command

    from gateway.store.engine import _alembic_config

    cfg = _alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


async def test_migration_0009_keeps_every_record_and_sums_sizes_from_blobs(store_url):
    """Dropping ``records.size_bytes`` must not re-create ``records`` (its foreign keys cascade:
    a copy-and-drop would empty items and blobs); sizes are then summed from the blobs."""
    from sqlalchemy import text

    from records_bridge.store import RecordStore

    async with _migrated_to(store_url, "0008") as conn:
        at = {"at": AT}
        await conn.execute(text("INSERT INTO records (id, display_name, state, size_bytes, created_at) "
                                "VALUES (7, 'Pat', 'active', 99, :at)"), at)
        await conn.execute(text("INSERT INTO items (id, uid, record_id, type, version, state, inbox_state, "
                                "created_at, source_kind, data) VALUES (1, 'u1', 7, 'message', 'v1', 'active', "
                                "'unreviewed', :at, 'direct', '{}')"), at)
        for n, size in ((1, 5), (2, 94)):
            await conn.execute(text("INSERT INTO blobs (item_id, name, content_type, size, sha256, data) "
                                    "VALUES (1, :name, 'text/plain', :size, 'x', :data)"),
                               {"name": f"b{n}", "size": size, "data": b"x" * size})
    new = await open_store(store_url)
    try:
        [record] = await RecordStore(new).records()
        assert (record.id, record.size_bytes) == (7, 99)
        async with new.engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM blobs")) == 2
            assert "size_bytes" not in {c["name"] for c in await conn.run_sync(
                lambda sync: inspect(sync).get_columns("records"))}
    finally:
        await new.close()


async def test_migration_0011_binds_the_delivery_keys_to_their_senders(store_url):
    """Deliveries made before keep being recognised: a retry of a message delivered under the
    bare Message-ID key is still a duplicate after the upgrade; another sender's is not."""
    from sqlalchemy import text

    from records_bridge.store import RecordStore
    from records_bridge.types import Delivery, Provenance

    async with _migrated_to(store_url, "0010") as conn:
        at = {"at": AT}
        await conn.execute(text("INSERT INTO records (id, display_name, state, created_at) "
                                "VALUES (7, 'Pat', 'active', :at)"), at)
        for item, sender, mid, key in ((1, "alice@a.test", "<m1@a.test>", "<m1@a.test>"),
                                       (2, None, None, "sha256:" + "0" * 64)):
            await conn.execute(text(  # ids from the table's own sequence: later inserts take the next
                "INSERT INTO items (uid, record_id, type, version, state, inbox_state, created_at, "
                "source_kind, sender, message_id, data) VALUES (:uid, 7, 'message', 'v1', 'active', "
                "'unreviewed', :at, 'direct', :sender, :mid, '{}')"),
                {**at, "uid": f"u{item}", "sender": sender, "mid": mid})
            await conn.execute(text("INSERT INTO record_deliveries (record_id, message_key, item_id, delivered_at) "
                                    "SELECT 7, :key, id, :at FROM items WHERE uid = :uid"),
                               {**at, "key": key, "uid": f"u{item}"})
    new = await open_store(store_url)
    try:
        async with new.engine.connect() as conn:
            keys = set((await conn.execute(text("SELECT message_key FROM record_deliveries"))).scalars())
        assert keys == {"sha256:" + "0" * 64, "mid:" + hashlib.sha256(b"12:alice@a.test<m1@a.test>").hexdigest()}

        def sent(sender: str) -> Delivery:
            return Delivery(Provenance(sender, "ab" * 32, "CN=x", "trusted", "<m1@a.test>"), ("p@b.test",),
                            "s", None, AT, b"Subject: s\r\n\r\nx\r\n", "x")

        records = RecordStore(new)
        assert (await records.deliver(7, sent("alice@a.test"))).duplicate
        assert not (await records.deliver(7, sent("bob@a.test"))).duplicate
    finally:
        await new.close()


async def test_migrated_schema_matches_schema_module(store):
    def describe(conn):
        insp = inspect(conn)
        return {
            name: (
                {c["name"]: c["nullable"] for c in insp.get_columns(name)},
                sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(name)),
            )
            for name in insp.get_table_names()
            if name != "alembic_version"
        }

    async with store.engine.connect() as conn:
        found = await conn.run_sync(describe)
    expected = {
        t.name: (
            {c.name: c.nullable for c in t.columns},
            sorted(tuple(c.name for c in u.columns) for u in t.constraints if isinstance(u, UniqueConstraint)),
        )
        for t in schema.metadata.sorted_tables
    }
    assert found == expected


async def test_times_come_back_aware_utc(store):
    local = datetime(2026, 6, 1, 14, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    async with store.begin() as conn:
        await conn.execute(schema.domains.insert().values(name="a.test", created_at=local))
    async with store.begin() as conn:
        created = await conn.scalar(select(schema.domains.c.created_at))
    assert created == datetime(2026, 6, 1, 14, 0, tzinfo=UTC)
    assert created.tzinfo is not None
    with pytest.raises(Exception, match="naive"):
        async with store.begin() as conn:
            await conn.execute(schema.domains.insert().values(name="b.test", created_at=datetime(2026, 1, 1)))


async def test_unreachable_database_is_a_typed_error(tmp_path):
    with pytest.raises(StoreError) as err:
        await open_store("postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    assert err.value.problem is StoreProblem.UNREACHABLE
    with pytest.raises(StoreError) as err:
        await open_store(f"sqlite+aiosqlite:///{tmp_path}/missing-dir/x.db")
    assert err.value.problem is StoreProblem.UNREACHABLE


async def test_anchors_apply_to_their_domain_and_direction_only(store):
    a, b = hisp("a.test"), hisp("b.test")
    domains, anchors = LocalDomains(store), DbAnchors(store)
    await domains.create("a.test", at=AT)
    await domains.create("b.test", at=AT)
    await anchors.add("a.test", [Direction.INCOMING], [a.root.ref], at=AT)
    await anchors.add("b.test", [Direction.OUTGOING], [b.root.ref, b.intermediate.ref], at=AT)

    assert (await anchors.anchors("a.test", Direction.INCOMING)).certificates == (a.root.ref,)
    assert (await anchors.anchors("a.test", Direction.OUTGOING)).certificates == ()
    assert (await anchors.anchors("b.test", Direction.INCOMING)).certificates == ()
    assert set((await anchors.anchors("B.TEST.", Direction.OUTGOING)).certificates) == {b.root.ref, b.intermediate.ref}
    assert (await anchors.anchors("c.test", Direction.INCOMING)).certificates == ()


async def test_anchor_set_version_follows_contents(store):
    a = hisp("a.test")
    anchors = DbAnchors(store)
    await LocalDomains(store).create("a.test", at=AT)
    empty = await anchors.anchors("a.test", Direction.INCOMING)
    added = await anchors.add("a.test", tuple(Direction), [a.root.ref, a.root.ref], at=AT)
    assert [r.direction for r in added.added] == [Direction.INCOMING, Direction.OUTGOING]
    one = await anchors.anchors("a.test", Direction.INCOMING)
    assert one.version != empty.version

    again = await anchors.add("a.test", [Direction.INCOMING], [a.root.ref], at=AT)
    assert again.added == () and again.already_present == ((Direction.INCOMING, a.root.ref),)
    assert (await anchors.anchors("a.test", Direction.INCOMING)).version == one.version

    incoming_id = next(r.id for r in added.added if r.direction is Direction.INCOMING)
    removed = await anchors.remove(incoming_id)
    assert removed.subject == a.root.ref.subject
    assert (await anchors.anchors("a.test", Direction.INCOMING)).version == empty.version
    assert (await anchors.anchors("a.test", Direction.OUTGOING)).certificates == (a.root.ref,)
    with pytest.raises(StoreError) as err:
        await anchors.remove(incoming_id)
    assert err.value.problem is StoreProblem.NOT_FOUND


async def test_anchors_need_a_local_domain(store):
    with pytest.raises(StoreError, match="not a local domain"):
        await DbAnchors(store).add("nowhere.test", [Direction.INCOMING], [hisp("x.test").root.ref], at=AT)


async def test_removing_a_domain_removes_its_anchors(store):
    a = hisp("a.test")
    await LocalDomains(store).create("a.test", at=AT)
    await DbAnchors(store).add("a.test", tuple(Direction), [a.root.ref], at=AT)
    await LocalDomains(store).remove("a.test")
    async with store.engine.connect() as conn:  # foreign keys cascade (SQLite needs PRAGMA foreign_keys)
        assert (await conn.execute(select(schema.anchors))).all() == []


async def test_trust_engine_judges_with_database_anchors(store):
    """The composition the server does: build_trust_service(config.section("trust"), DbAnchors(store))."""
    b = hisp("b.test")
    bob = b.address("bob")
    await LocalDomains(store).create("a.test", at=AT)
    anchors = DbAnchors(store)
    service, fetcher = build_trust_service({}, anchors)
    try:
        async def judge(direction):
            return await service.decide(
                bob.ref, purpose=Purpose.ENCRYPTION, bound_to="bob@b.test", local_domain="a.test",
                direction=direction, at=AT, intermediates=[b.intermediate.ref],
            )

        assert (await judge(Direction.OUTGOING)).failure.check is Check.NO_ANCHORS
        await anchors.add("a.test", [Direction.OUTGOING], [b.root.ref], at=AT)
        assert (await judge(Direction.OUTGOING)).trusted
        assert not (await judge(Direction.INCOMING)).trusted  # the other direction's anchors do not apply
    finally:
        await fetcher.close()


async def test_sqlite_settings(tmp_path):
    """WAL (readers beside the writer) is set on the file; foreign keys on every connection."""
    s = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with s.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await s.close()


async def test_the_migrated_schema_is_the_model(store_url):
    """Every table, column and index the code's model names, the migrations make, and nothing else:
    an index added to one and not the other (or a column) is a difference here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import records_bridge.schema  # noqa: F401 -- the tables of every part, on the one metadata
    from gateway.cli import serve_run  # noqa: F401 -- what serve imports registers the rest
    from gateway.store.schema import metadata

    store = await open_store(store_url)
    try:
        async with store.engine.connect() as conn:
            differences = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
    finally:
        await store.close()
    assert differences == []
