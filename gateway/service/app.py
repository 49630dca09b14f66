"""The composition root of ``directgw serve``: everything is built here, once, and passed in.

One process runs: the SMTP edge (gateway/smtp) in front of the receiving
pipeline (gateway/receive), the outbound delivery loop (gateway/outbound),
the HTTP listener (health, metrics), and, in the first worker only, the DNS
responder when ``[dns]`` is configured and the trust-bundle refresh.
``--workers N`` runs N such processes on one SMTP port (SO_REUSEPORT, see
``workers``): ``cryptography`` holds the GIL, so a second core needs a second
process. The outbound loop runs in every worker: its leases keep two
workers from sending one job.

Only this module (and the CLI) read the clock: ``clock`` is handed to
everything that needs the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from anchors.bundles import Bundles
from anchors.cached import CachedAnchors
from anchors.store import DbAnchors
from gateway.accounts import AccountAuthenticator, Accounts, Lockouts
from gateway.config import Config, ConfigError
from gateway.core.limits import Limits
from gateway.discovery import TrustServiceJudge, build_discovery
from gateway.discovery.dnsclient import DnsClient
from gateway.discovery.settings import RESOLV_CONF, settings_from_mapping, system_nameservers
from gateway.domains import LocalDomains
from gateway.monitor.mailboxes import ProviderMailboxes
from gateway.monitor.monitor import DeliveryMonitor
from gateway.monitor.settings import monitor_settings
from gateway.outbound.queue import OutboundQueue
from gateway.outbound.routes import MxRouter
from gateway.outbound.settings import OutboundSettings, outbound_settings
from gateway.outbound.transport import SmtpTransport
from gateway.outbound.worker import DeliveryWorker
from gateway.receive import ReceiveSettings, ReceivingPipeline
from gateway.smtp.server import SmtpServer, start_smtp, start_submission
from gateway.smtp.sockets import listening_socket
from gateway.smtp.tls import server_context
from gateway.store import Store, open_store
from gateway.submit import SubmissionPipeline, SubmitSettings
from records_bridge.store import RecordStore
from records_bridge.web.context import BridgeContext
from trust.settings import build_trust_service

from .http import HttpStatus, start_http
from .settings import CannotListen, Listen, ServeSettings, ServeSettingsError

log = structlog.get_logger("directgw.serve")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Running:
    """A started service; ``stop()`` winds it down in order."""

    settings: ServeSettings
    store: Store
    smtp: SmtpServer
    stop_event: asyncio.Event
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    closers: list[Callable[[], Any]] = field(default_factory=list)
    http_port: int | None = None
    submission: SmtpServer | None = None
    """The submission port (587), when configured."""
    bridge_port: int | None = None
    """The records bridge's port, when ``[bridge] listen`` is set."""

    @property
    def smtp_port(self) -> int:
        return self.smtp.port

    async def stop(self) -> None:
        """Stop accepting, let sessions and in-flight deliveries finish (bounded), close everything."""
        log.info("serve.stopping")
        await self.halt(grace=None)
        for close in reversed(self.closers):
            result = close()
            if asyncio.iscoroutine(result):
                await result
        await self.store.close()
        log.info("serve.stopped")

    async def halt(self, grace: float | None = 0) -> None:
        """Stop the SMTP listeners (sessions get ``grace`` seconds; None: the server's own)
        and the loops (they hand back what they hold); the closers and the store stay open."""
        self.stop_event.set()
        servers = [self.smtp, *([self.submission] if self.submission else [])]
        await asyncio.gather(*(server.close(grace=grace) for server in servers))
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def relative_paths(out: OutboundSettings, base: Path) -> OutboundSettings:
    """File paths in the configuration are relative to its directory, as data_dir is."""
    if out.tls_ca_file is not None and not out.tls_ca_file.is_absolute():
        return replace(out, tls_ca_file=base / out.tls_ca_file)
    return out


def _discovery_table(config: Config) -> dict[str, Any]:
    table = config.section("discovery")
    if "nameservers" not in table:
        # no [discovery]: the system's resolvers, as `init` would have written
        with contextlib.suppress(OSError):
            table["nameservers"] = system_nameservers(RESOLV_CONF.read_text(encoding="utf-8")) or ["127.0.0.1:53"]
    return table


def _tls(settings: ServeSettings) -> ssl.SSLContext | None:
    if settings.tls_certificate is None or settings.tls_key is None:
        return None
    return server_context(settings.tls_certificate, settings.tls_key)


async def start_service(
    config: Config,
    settings: ServeSettings,
    *,
    clock: Callable[[], datetime] = utc_now,
    first_worker: bool = True,
    reuse_port: bool = False,
) -> Running:
    """Everything ``serve`` runs, started and listening; raises before listening if it cannot."""
    store = await open_store(config.storage_url)
    closers: list[Callable[[], Any]] = []
    try:
        return await _start(config, settings, store, closers, clock, first_worker, reuse_port)
    except BaseException:
        for close in reversed(closers):
            result = close()
            if asyncio.iscoroutine(result):
                await result
        await store.close()
        raise


async def _start(
    config: Config, settings: ServeSettings, store: Store, closers: list[Callable[[], Any]],
    clock: Callable[[], datetime], first_worker: bool, reuse_port: bool,
) -> Running:
    domains = LocalDomains(store)
    records = RecordStore(store)
    bridge = _bridge_context(config, settings, store, records, clock)  # its settings fail before anything listens
    trust, fetcher = build_trust_service(config.section("trust"), CachedAnchors(DbAnchors(store), clock))
    closers.append(fetcher.close)
    discovery_settings = settings_from_mapping(_discovery_table(config))
    discovery = build_discovery(discovery_settings, TrustServiceJudge(trust), fetcher)
    local = [d.name for d in await domains.all()]
    out = outbound_settings(config.section("outbound"), config.section("routes"),
                           helo=settings.hostname or (local[0] if local else "localhost"))
    out = relative_paths(out, config.path.parent)
    owner = f"{settings.node}:{os.getpid()}"
    # providers' mailboxes and the delivery monitor (docs/monitor.md): the queue tells them
    # how each job ended, inside the transaction that records it
    monitoring = monitor_settings(config.section("domains"), config.section("monitor"))
    monitor = DeliveryMonitor(monitoring, reporting_mta=out.helo, node=owner)
    mailboxes = ProviderMailboxes(monitoring, monitor)
    queue = OutboundQueue(store, backoff=out.backoff, on_settled=mailboxes.job_settled,
                          settled_kinds=ProviderMailboxes.SETTLED_KINDS)
    router = MxRouter(
        DnsClient(discovery_settings.nameservers, timeout=discovery_settings.dns_timeout),
        static=out.routes, tls_for=out.tls_for, mx_port=out.mx_port,
    )
    transport = SmtpTransport(out)
    closers.append(transport.close)  # after the delivery loop has stopped: QUIT the sessions it kept
    worker = DeliveryWorker(queue, discovery=discovery, keys=domains, router=router, transport=transport,
                            settings=out, clock=clock, owner=owner, providers=monitoring.provider_routes)
    core_limits = replace(Limits(), max_message_bytes=settings.limits.max_message_size)
    pipeline = ReceivingPipeline(store, domains, records, trust, queue, clock,
                                 ReceiveSettings(limits=core_limits, node=owner), mailboxes=mailboxes)
    stop = asyncio.Event()
    with _listening("SMTP", settings.smtp):
        sock = listening_socket(settings.smtp.host, settings.smtp.port, reuse_port=reuse_port)
        smtp = await start_smtp(pipeline, settings.limits, sock=sock, tls_context=_tls(settings),
                                hostname=settings.hostname)
    running = Running(settings, store, smtp, stop, closers=closers)
    try:
        running.submission = await _start_submission(store, queue, settings, out, core_limits, clock, owner,
                                                     reuse_port)
        running.tasks.append(asyncio.create_task(worker.run(stop), name="outbound"))
        running.tasks.append(asyncio.create_task(monitor.run(store, stop, clock, wake=queue.wake), name="monitor"))
        if settings.http is not None:
            with _listening("HTTP", settings.http):
                runner = await start_http(
                    HttpStatus(store, clock, owner, clock(),
                               {"directgw_smtp_sessions_open": lambda: float(smtp.sessions),
                                **(bridge.refusals.gauges() if bridge is not None else {})}),
                    settings.http.host, settings.http.port,
                )
            closers.append(runner.cleanup)
            running.http_port = runner.addresses[0][1] if runner.addresses else None
        if bridge is not None and settings.bridge is not None:
            from records_bridge.web.server import start_bridge

            with _listening("records bridge", settings.bridge):
                served = await start_bridge(bridge, settings.bridge.host, settings.bridge.port, reuse_port=reuse_port)
            closers.append(served.close)
            running.bridge_port = served.port
        if first_worker:
            await _start_dns(config, domains, closers)
            running.tasks.append(asyncio.create_task(_refresh_bundles(store, settings, clock, stop), name="bundles"))
    except BaseException:
        await running.halt()  # start_service's caller never sees it: the closers and the store are closed there
        raise
    log.info("serve.started", smtp=str(settings.smtp), smtp_port=smtp.port, http=str(settings.http),
             node=owner, domains=local, tls=settings.tls_certificate is not None)
    return running


async def _start_submission(
    store: Store, queue: OutboundQueue, settings: ServeSettings, out: OutboundSettings, core_limits: Limits,
    clock: Callable[[], datetime], owner: str, reuse_port: bool,
) -> SmtpServer | None:
    """Port 587 for EHRs (docs/submission.md): the same edge with AUTH against the accounts."""
    tls = _tls(settings)
    if settings.submission is None or tls is None:  # the settings refuse a submission port without TLS
        return None
    accounts = Accounts(store)
    pipeline = SubmissionPipeline(store, accounts, queue, clock,
                                  SubmitSettings(lifetime=out.lifetime, limits=core_limits, node=owner))
    authenticator = AccountAuthenticator(accounts, Lockouts(store, settings.lockout), clock)
    with _listening("submission", settings.submission):
        sock = listening_socket(settings.submission.host, settings.submission.port, reuse_port=reuse_port)
        return await start_submission(pipeline, authenticator, settings.limits, tls_context=tls, sock=sock,
                                      hostname=settings.hostname)


@contextlib.contextmanager
def _listening(listener: str, where: Listen) -> Iterator[None]:
    """A bind that fails is raised as ``CannotListen`` naming this listener, not the SMTP port."""
    try:
        yield
    except OSError as exc:
        raise CannotListen(listener, str(where), where.port, exc) from exc


def _bridge_context(config: Config, settings: ServeSettings, store: Store, records: RecordStore,
                    clock: Callable[[], datetime]) -> BridgeContext | None:
    """The records bridge's context when ``[bridge] listen`` asks serve to run it (docs/bridge.md)."""
    if settings.bridge is None:
        return None
    from records_bridge.web.settings import settings_from_config

    try:
        bridge = settings_from_config(config, listen_override=str(settings.bridge))
    except ServeSettingsError as exc:
        raise ConfigError(config.path, exc.key, exc.detail) from exc
    return BridgeContext(store=store, records=records, clock=clock, settings=bridge)


async def _start_dns(config: Config, domains: LocalDomains, closers: list[Callable[[], Any]]) -> None:
    table = config.section("dns")
    if not table or table.get("enabled") is False:
        return
    from gateway.publish import dns_settings
    from gateway.publish.responder import start_responder

    dns = dns_settings(table)
    if not dns.zones:
        dns = replace(dns, zones=tuple(d.name for d in await domains.all()))
    with _listening("DNS", Listen(dns.host, dns.port)):
        responder = await start_responder(dns, domains)
    closers.append(responder.close)
    log.info("serve.dns", address=str(responder.address), zones=list(dns.zones))


async def _refresh_bundles(store: Store, settings: ServeSettings, clock: Callable[[], datetime],
                           stop: asyncio.Event) -> None:
    """Each bundle on its own interval (anchors.bundles); failures keep the last good copy."""
    async with aiohttp.ClientSession() as session:
        bundles = Bundles(store, session)
        while not stop.is_set():
            try:
                for outcome in await bundles.refresh_due(clock()):
                    log.info("bundle.refresh", outcome=str(outcome))
            except Exception as exc:  # a refresh failure must not stop the gateway; say it and go on
                log.error("bundle.refresh-failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.bundle_check)
