"""Publishing our certificates: a small authoritative DNS responder (CERT, SOA, NS).

Built at the composition root::

    settings = dns_settings(config.section("dns"))
    running = await start_responder(settings, store)   # store: PublishedCertificates
    ...
    await running.close()

or ``await serve(settings, source)``, which runs until cancelled.
"""

from .responder import DnsResponder, RunningResponder, serve, start_responder
from .settings import DnsSettings, DnsSettingsError, dns_settings
from .source import PublishedCertificates, PublishError, StaticPublished, load_published, owners_of
from .zone import Zone, answer, build_zone, find_zone, owner_name

__all__ = [
    "DnsResponder", "DnsSettings", "DnsSettingsError", "PublishError", "PublishedCertificates", "RunningResponder",
    "StaticPublished", "Zone", "answer", "build_zone", "dns_settings", "find_zone", "load_published", "owner_name", "owners_of",
    "serve", "start_responder",
]
