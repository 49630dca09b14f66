"""The delivery loop: claim, find certificates, seal, route, send, record.

For each claimed job (one message, one recipient):

1. past its lifetime (the gateway was down): expired, nothing sent;
2. the sender's signing pair (``LocalDomains.signing_pair``): none is a final failure;
3. the recipient's certificates (``Discovery.discover``, judged against the
   sender domain's outgoing anchors): none anywhere is a final failure, the
   discovery report kept as the reason (Direct item 21: "no send"); a source
   that could not be asked is temporary;
4. ``seal_outbound`` (pure core): sign with our key, encrypt to every found certificate;
5. the route (static, MX, implicit MX; null MX and NXDOMAIN are final);
6. SMTP: ``Sent``, ``Temporary`` (retried with backoff until the lifetime
   runs out, then expired) or ``Permanent`` (failed).

Sealing happens at every attempt, not at enqueue time: certificates found
then are the ones valid now (a recipient's rollover between attempts is
followed), and the queue never holds ciphertext for a key that was revoked.
A recipient's discovered certificates are reused for a few seconds
(``DISCOVERED_TTL``), as the sender's signing pair is: a busy destination
costs one certificate selection every few seconds, not one per message.
A bug in one attempt is logged and retried, never made a final failure.

``run`` keeps up to ``batch`` attempts in flight, claiming as slots free and
when this process commits a job (``OutboundQueue.wake``), polling only for
what other nodes queue. When its stop event is set it lets in-flight attempts
finish for ``grace`` seconds and hands back (``release``) the leases of those
still running, so another worker takes them at once instead of waiting for
the lease to run out. ``run_once`` is one round, for tests and the CLI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy.exc import SQLAlchemyError

from gateway.common.ttl_cache import TtlCache
from gateway.core.certs import KeyPair
from gateway.core.outbound import SealOptions, seal_outbound
from gateway.core.outcomes import Rejected
from gateway.discovery.types import Discovered, DoNotSend

from .queue import Job, JobState, OutboundQueue, Reason
from .routes import Destination, Router, Unroutable
from .settings import OutboundSettings, StaticRoute
from .transport import Permanent, Sent, Temporary, Transport

log = structlog.get_logger("directgw.outbound")

DEFAULT_GRACE_SECONDS = 20.0
"""How long a stopping worker lets in-flight sessions finish (systemd's stop timeout is 90 s)."""


SIGNING_PAIR_TTL = timedelta(seconds=5)
"""How long a sender's signing pair is reused: the receiving pipeline's lookups allow the same
(gateway.receive.pipeline.LOOKUP_TTL), so a rollover or a removed key shows within seconds."""

SIGNING_PAIRS_HELD = 1024
"""Senders whose pairs are kept (LRU beyond): one per local address with its own certificate."""


DISCOVERED_TTL = timedelta(seconds=5)
"""How long a recipient's discovered certificates are reused. The DNS and LDAP answers behind
them are kept for their own TTLs and the judge keeps its trust decisions, so this saves the
selection and judging per message (4% of each gateway's GIL samples in bench/smtp_outbound.py),
not a lookup; a rollover or a revocation shows within seconds, as for SIGNING_PAIR_TTL. "Nothing
found" is not kept: a certificate published now is used at the next attempt."""

DISCOVERIES_HELD = 4096
"""Recipients whose certificates are kept (LRU beyond)."""


LEASE_MARGIN_SECONDS = 30.0
"""Kept back from each lease to write the outcome (at most a tenth of the lease)."""


class CertificateFinder(Protocol):
    """``gateway.discovery.Discovery``."""

    async def discover(self, address: str, *, local_domain: str, at: datetime) -> Discovered | DoNotSend: ...


class SigningKeys(Protocol):
    """``gateway.domains.LocalDomains``."""

    async def signing_pair(self, address: str, at: datetime) -> KeyPair | None: ...


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt at one job came to (for tests, logs and the CLI)."""

    job: Job
    state: JobState | None
    """The job's state afterwards; None when its lease had been lost to another worker."""
    reason: Reason
    detail: str
    code: int | None = None


@dataclass(frozen=True, slots=True)
class _Outcome:
    final: bool
    reason: Reason
    detail: str
    code: int | None = None
    peer: str | None = None
    sent_message_id: str | None = None
    delivered: bool = False
    expired: bool = False


class DeliveryWorker:
    def __init__(
        self,
        queue: OutboundQueue,
        *,
        discovery: CertificateFinder,
        keys: SigningKeys,
        router: Router,
        transport: Transport,
        settings: OutboundSettings,
        clock: Callable[[], datetime],
        owner: str,
        providers: Mapping[str, StaticRoute] | None = None,
    ) -> None:
        self.queue = queue
        self.discovery = discovery
        self.keys = keys
        self.router = router
        self.transport = transport
        self.settings = settings
        self.clock = clock
        self.owner = owner
        self.providers = {d.lower(): r for d, r in (providers or {}).items()}
        """Local domains' provider routes (``[domains.*] provider_smtp``), for plain jobs."""
        self._pairs: TtlCache[KeyPair] = TtlCache(max_entries=SIGNING_PAIRS_HELD)
        self._found: TtlCache[Discovered] = TtlCache(max_entries=DISCOVERIES_HELD)

    async def run_once(self) -> list[Attempt]:
        """Claim one batch and attempt every job in it concurrently."""
        jobs = await self._claim()
        return list(await asyncio.gather(*(self.attempt(job) for job in jobs)))

    async def run(self, stop: asyncio.Event, *, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Keep up to ``batch`` attempts in flight until ``stop`` is set.

        A slot is refilled as soon as its attempt ends (no rounds: a job never waits
        for another's slow session). A claim is made when a slot frees while the last
        claim filled every slot (more may be due), when this process committed a job
        (``OutboundQueue.wake``), and every ``poll`` seconds otherwise: the poll finds
        jobs other nodes queued and retries that came due."""
        loop = asyncio.get_running_loop()
        running: dict[asyncio.Task[Attempt], Job] = {}
        woken = self.queue.woken
        waking: asyncio.Task[Any] | None = None
        stopping = asyncio.create_task(stop.wait())
        more, next_poll = True, loop.time()
        try:
            while not stop.is_set():
                free = self.settings.batch - len(running)
                if free > 0 and (more or woken.is_set() or loop.time() >= next_poll):
                    woken.clear()  # before the claim: a job committed during it wakes the next one
                    next_poll = loop.time() + self.settings.poll
                    jobs = await self._claim_or_wait(free)
                    more = len(jobs) == free
                    for job in jobs:
                        running[asyncio.create_task(self.attempt(job), name=f"outbound-{job.id}")] = job
                    continue
                waiting: set[asyncio.Future[Any]] = {stopping, *running}
                if free > 0:
                    if waking is None or waking.done():
                        waking = asyncio.create_task(woken.wait())
                    waiting.add(waking)
                timeout = max(next_poll - loop.time(), 0.0) if free > 0 else None
                done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.pop(task, None)  # type: ignore[call-overload]
        except asyncio.CancelledError:
            # cancelled rather than stopped: no grace, the leases simply run out
            for task in running:
                task.cancel()
            raise
        finally:
            stopping.cancel()
            if waking is not None:
                waking.cancel()
        await self._wind_down(running, grace)

    async def _claim_or_wait(self, limit: int) -> list[Job]:
        try:
            s = self.settings
            return await self.queue.claim(self.owner, at=self.clock(), lease=s.lease, limit=limit)
        except (SQLAlchemyError, OSError) as exc:
            # the database is away: nothing is lost (every job is in it), so wait and ask again
            log.warning("outbound.store-unavailable", node=self.owner, error=str(exc).splitlines()[0][:300])
            return []

    async def _claim(self) -> list[Job]:
        s = self.settings
        return await self.queue.claim(self.owner, at=self.clock(), lease=s.lease, limit=s.batch)

    async def _wind_down(self, running: dict[asyncio.Task[Attempt], Job], grace: float) -> None:
        """Stopping: in-flight attempts get ``grace`` seconds, then are cut and their jobs handed back."""
        pending = [t for t in running if not t.done()]
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=grace)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)
        for task in still:
            job = running[task]
            # a session cut mid-DATA may have delivered; the next attempt may then duplicate
            # it, which RFC 5321 accepts (6.1) and Direct's Message-ID deduplication absorbs
            try:
                handed_back = await self.queue.release(job, at=self.clock())
            except (SQLAlchemyError, OSError):
                handed_back = False  # its lease runs out instead
            log.info("outbound.released", node=self.owner, job=job.id, recipient=job.recipient,
                     handed_back=handed_back)

    async def attempt(self, job: Job) -> Attempt:
        """One attempt at one claimed job; never raises (a bug becomes a retry)."""
        bound = log.bind(node=self.owner, job=job.id, kind=job.kind.value, recipient=job.recipient, attempt=job.attempts)
        at = self.clock()
        if at >= job.expires_at:
            outcome = _Outcome(True, job.reason or Reason.LIFETIME, "expired before this attempt", expired=True)
        else:
            try:
                # the whole attempt ends before the lease does, so no other worker can take
                # the job while this one may still be sending it
                async with asyncio.timeout(self._budget(job, at)):
                    outcome = await self._deliver(job, at)
            except TimeoutError:
                outcome = _Outcome(False, Reason.TIMEOUT, "the attempt outlasted its lease's budget")
            except Exception as exc:  # a bug: logged with its traceback, the job kept and retried
                bound.exception("outbound.internal-error")
                outcome = _Outcome(False, Reason.INTERNAL, f"internal error ({type(exc).__name__}); see the log")
        try:
            return await self._record(job, outcome, bound)
        except (SQLAlchemyError, OSError) as exc:
            # the outcome could not be written: the lease runs out and the job is attempted
            # again (a delivered message may then be sent twice, which RFC 5321 6.1 accepts)
            bound.warning("outbound.unrecorded", reason=outcome.reason.value, error=str(exc).splitlines()[0][:300])
            return Attempt(job, None, outcome.reason, f"{outcome.detail} (not recorded: the database failed)",
                           outcome.code)

    def _budget(self, job: Job, at: datetime) -> float:
        """Seconds left of the lease, less a margin to record the outcome in."""
        left = ((job.lease_until or at) - at).total_seconds()
        return max(left - min(LEASE_MARGIN_SECONDS, left / 10), 0.0)

    async def _record(self, job: Job, outcome: _Outcome, bound: structlog.typing.FilteringBoundLogger) -> Attempt:
        at = self.clock()
        state: JobState | None
        if outcome.expired:
            state = JobState.EXPIRED if await self.queue.expire(job, at=at) else None
        elif outcome.delivered:
            done = await self.queue.sent(job, at=at, code=outcome.code or 250, peer=outcome.peer or "",
                                         sent_message_id=outcome.sent_message_id)
            state = JobState.SENT if done else None
        elif outcome.final:
            done = await self.queue.failed(job, at=at, reason=outcome.reason, code=outcome.code,
                                           error=outcome.detail, peer=outcome.peer)
            state = JobState.FAILED if done else None
        else:
            state = await self.queue.retry(job, at=at, reason=outcome.reason, code=outcome.code,
                                           error=outcome.detail, peer=outcome.peer)
        bound.info("outbound.attempt", state=state.value if state else "lease-lost", reason=outcome.reason.value,
                   code=outcome.code, peer=outcome.peer, detail=outcome.detail[:300])
        return Attempt(job, state, outcome.reason, outcome.detail, outcome.code)

    async def _deliver(self, job: Job, at: datetime) -> _Outcome:
        if job.kind.plain:
            return await self._deliver_plain(job)
        sender_domain = job.sender.rpartition("@")[2].lower()
        pair = await self._signing_pair(job.sender, at)
        if pair is None:
            return _Outcome(True, Reason.NO_SIGNING_KEY,
                            f"no valid signing certificate for {job.sender} or {sender_domain}")
        found = await self._discover(job.recipient, sender_domain, at)
        if isinstance(found, DoNotSend):
            if found.temporary:
                return _Outcome(False, Reason.DISCOVERY_UNAVAILABLE, found.explain())
            return _Outcome(True, Reason.NO_CERTIFICATE, found.explain())
        # what an operator (and `directgw demo`) needs to follow a message: where its
        # recipient's certificates came from, and how it was sealed
        log.info("outbound.discovered", node=self.owner, job=job.id, recipient=job.recipient,
                 source=found.source.value, binding=found.binding.value,
                 certificates=[c.subject for c in found.certificates])
        sealed = seal_outbound(job.payload, pair, found.certificates, SealOptions(at=at))
        if isinstance(sealed, Rejected):
            return _Outcome(True, Reason.SEAL_REJECTED, f"{sealed.reason.value}: {sealed.detail}")
        log.info("outbound.sealed", node=self.owner, job=job.id, recipient=job.recipient, signer=pair.cert.subject,
                 digest=sealed.digest.value, cipher=sealed.cipher.value, key_transport=sealed.key_transport.value,
                 message_id=sealed.message_id)
        route = await self.router.route(job.domain, at=at)
        if isinstance(route, Unroutable):
            reason = Reason.NULL_MX if route.null_mx else (
                Reason.NO_SUCH_DOMAIN if route.permanent else Reason.DNS_UNAVAILABLE)
            return _Outcome(route.permanent, reason, route.detail)
        envelope_from = "" if job.kind.null_sender else job.sender
        result = await self.transport.deliver(route.destinations, envelope_from, job.recipient, sealed.message)
        return _outcome(result, route.how, sealed.message_id)

    async def _signing_pair(self, sender: str, at: datetime) -> KeyPair | None:
        """The key ring's answer, reused for ``SIGNING_PAIR_TTL`` while its certificate is valid
        (a query and a thread hop per attempt were a tenth of the loop's CPU under load)."""
        key = sender.strip().lower()
        pair = self._pairs.get(key, at)
        if pair is not None and pair.cert.valid_at(at):
            return pair
        pair = await self.keys.signing_pair(sender, at)
        if pair is not None:  # "no key" is not kept: a key added now is used at the next attempt
            self._pairs.put(key, pair, at, SIGNING_PAIR_TTL)
        return pair

    async def _discover(self, recipient: str, sender_domain: str, at: datetime) -> Discovered | DoNotSend:
        """The discovery's answer, reused for ``DISCOVERED_TTL`` while every certificate in it is valid."""
        key = (recipient.strip().lower(), sender_domain)
        found = self._found.get(key, at)
        if found is not None and all(c.valid_at(at) for c in found.certificates):
            return found
        answer = await self.discovery.discover(recipient, local_domain=sender_domain, at=at)
        if isinstance(answer, Discovered):
            self._found.put(key, answer, at, DISCOVERED_TTL)
        return answer

    async def _deliver_plain(self, job: Job) -> _Outcome:
        """A provider's mailbox: as is, to the recipient domain's provider route (STARTTLS when
        offered, or as ``[outbound] starttls`` requires), retried like any job."""
        route = self.providers.get(job.domain)
        if route is None:
            return _Outcome(True, Reason.NO_PROVIDER_ROUTE, f"{job.domain} has no provider_smtp route")
        destination = Destination(route.host, route.host, route.port, self.settings.tls_for(job.domain))
        envelope_from = "" if job.kind.null_sender else job.sender
        result = await self.transport.deliver((destination,), envelope_from, job.recipient, job.payload)
        return _outcome(result, "provider route", None)


def _outcome(result: Sent | Permanent | Temporary, how: str, sent_message_id: str | None) -> _Outcome:
    """The transport's answer as the job's outcome."""
    peer = str(result.destination) if result.destination is not None else None
    if isinstance(result, Sent):
        return _Outcome(True, Reason.DELIVERED, f"{how}: {result.text}", result.code, peer,
                        sent_message_id, delivered=True)
    if isinstance(result, Permanent):
        return _Outcome(True, result.reason, result.text, result.code, peer)
    assert isinstance(result, Temporary)
    return _Outcome(False, result.reason, result.text, result.code, peer)
