"""Certificate discovery: DNS CERT and LDAP (Direct items 16-21).

The composition root builds one ``Discovery`` with ``build_discovery(
settings_from_mapping(config.section("discovery")), TrustServiceJudge(trust),
fetcher)`` and, before sealing, calls ``await discovery.discover(recipient,
local_domain=sender_domain, at=now)``: a ``Discovered`` carries
``certificates`` for ``seal_outbound``; a ``DoNotSend`` means the message must
not go out, and ``explain()`` says why.
"""

from .dnsclient import DnsClient, Nameserver
from .judge import CertificateJudge, TrustServiceJudge, Verdict
from .ldapsource import Ldap3Directory, LdapDirectory, LdapServer
from .service import Discovery, address_name
from .settings import (
    DiscoverySettings,
    DiscoverySettingsError,
    build_discovery,
    settings_from_mapping,
)
from .srv import SrvTarget, rfc2782_order
from .types import (
    Binding,
    Discovered,
    DiscoveryResult,
    DoNotSend,
    Dropped,
    DropReason,
    Outcome,
    Source,
    SourceReport,
)

__all__ = [
    "Binding", "CertificateJudge", "Discovered", "Discovery", "DiscoveryResult", "DiscoverySettings",
    "DiscoverySettingsError", "DnsClient", "DoNotSend", "DropReason", "Dropped", "Ldap3Directory",
    "LdapDirectory", "LdapServer", "Nameserver", "Outcome", "Source", "SourceReport", "SrvTarget",
    "TrustServiceJudge", "Verdict", "address_name", "build_discovery", "rfc2782_order", "settings_from_mapping",
]
