"""Direct certificate policy: what a domain requires of the certificates it trusts.

One frozen value per local domain, strict by default. It is what the Java
reference implementation's policy engine is used for in practice (required
policy OIDs of a trust community, extended key usage, key size), plus the
choices Direct leaves to the operator: SHA-1 for backward compatibility
(Direct item 2), and what to do when revocation status cannot be established
(Direct item 10: temporary failure by default).

Read from the configuration with ``policy_from_mapping`` (the ``[trust]``
table, and ``[trust.domains."example.org"]`` tables over it).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any, Protocol


class RevocationUnknown(enum.Enum):
    """What an unobtainable CRL or OCSP answer means for the decision."""

    TEMPORARY = "temporary"  # reject for now; the sender retries (451 4.x.x)
    HARD_FAIL = "hard-fail"  # reject permanently (554 5.7.x)
    SOFT_PASS = "soft-pass"  # accept, as the reference implementation does by default


class RevocationRequirement(enum.Enum):
    """Which certificates must have their revocation status established."""

    WHEN_DECLARED = "when-declared"
    """Those that name a CRL distribution point or an OCSP responder, and any
    for which a CRL is held (Direct item 10: the status is checked where the
    certificate says how)."""
    REQUIRED = "required"
    """Every certificate of the path below the anchor: covered by a complete
    CRL (or a base CRL with its delta, direct or indirect, reason partitions
    combined until every reason is covered) or by an OCSP answer, or the
    decision is untrusted for now (RFC 5280 6.3; PKITS section 4 is run so)."""


EMAIL_PROTECTION = "1.3.6.1.5.5.7.3.4"
ANY_EXTENDED_KEY_USAGE = "2.5.29.37.0"

DEFAULT_DECISION_TTL = timedelta(hours=1)
"""How long a decision is reused at most, even when nothing in it expires
sooner: bounds how late an anchor removed out of band or a CRL published
early is noticed."""


class PolicyError(ValueError):
    """A ``[trust]`` table that cannot be used, naming the key."""

    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        self.detail = detail
        super().__init__(f"[trust] {key}: {detail}")


@dataclass(frozen=True, slots=True)
class Policy:
    min_rsa_bits: int = 2048
    """Direct item 14 (ETT "SVAP 2022": below 2048 is an error)."""
    allowed_curves: frozenset[str] = frozenset({"secp256r1", "secp384r1"})
    allow_sha1: bool = False
    """SHA-1 certificate signatures and message digests (Direct item 2: receivers
    MAY accept them for backward compatibility, as policy)."""
    allow_3des: bool = False
    """Messages encrypted with 3DES (Direct item 3 era HISPs)."""
    required_policy_oids: frozenset[str] = frozenset()
    """The leaf must assert at least one of these (e.g. a trust community's)."""
    required_eku: frozenset[str] = frozenset()
    """The leaf must list every one of these extended key usages."""
    eku_must_allow_email: bool = True
    """When the leaf has an EKU extension it must allow emailProtection (RFC 8550 4.4.4)."""
    revocation_unknown: RevocationUnknown = RevocationUnknown.TEMPORARY
    revocation: RevocationRequirement = RevocationRequirement.WHEN_DECLARED
    """Whether a certificate that declares no revocation source may pass unchecked."""
    decision_ttl: timedelta = DEFAULT_DECISION_TTL

    def __post_init__(self) -> None:
        if self.revocation is RevocationRequirement.REQUIRED and self.revocation_unknown is RevocationUnknown.SOFT_PASS:
            raise ValueError(_REQUIRED_WITH_SOFT_PASS)


_REQUIRED_WITH_SOFT_PASS = (
    'revocation = "required" cannot be combined with revocation_unknown = "soft-pass", '
    "which would accept the certificates it requires to be checked"
)

DEFAULT_POLICY = Policy()


class PolicyLookup(Protocol):
    def for_domain(self, domain: str) -> Policy: ...


@dataclass(frozen=True)
class DomainPolicies:
    """A default policy and overrides per local domain."""

    default: Policy = DEFAULT_POLICY
    domains: Mapping[str, Policy] = field(default_factory=dict)

    def for_domain(self, domain: str) -> Policy:
        return self.domains.get(domain.lower(), self.default)


_KEYS = {f.name for f in fields(Policy)}


def _oids(key: str, value: Any) -> frozenset[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise PolicyError(key, "expected a list of OID strings")
    for oid in value:
        parts = oid.split(".")
        if len(parts) < 2 or not all(p.isdigit() for p in parts):
            raise PolicyError(key, f"{oid!r} is not a dotted OID")
    return frozenset(value)


def _apply(base: Policy, table: Mapping[str, Any]) -> Policy:
    changes: dict[str, Any] = {}
    for key, value in table.items():
        k = key.replace("-", "_")
        if k not in _KEYS:
            raise PolicyError(key, f"unknown setting (known: {', '.join(sorted(_KEYS))})")
        if k == "min_rsa_bits":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1024:
                raise PolicyError(key, "expected an integer of at least 1024")
            changes[k] = value
        elif k == "allowed_curves":
            curves = _names(key, value)
            unknown = curves - {"secp256r1", "secp384r1", "secp521r1"}
            if unknown:
                raise PolicyError(key, f"unknown curves {sorted(unknown)}")
            changes[k] = curves
        elif k in ("allow_sha1", "allow_3des", "eku_must_allow_email"):
            if not isinstance(value, bool):
                raise PolicyError(key, "expected true or false")
            changes[k] = value
        elif k in ("required_policy_oids", "required_eku"):
            changes[k] = _oids(key, value)
        elif k == "revocation_unknown":
            try:
                changes[k] = RevocationUnknown(value)
            except ValueError:
                choices = ", ".join(m.value for m in RevocationUnknown)
                raise PolicyError(key, f"expected one of {choices}") from None
        elif k == "revocation":
            try:
                changes[k] = RevocationRequirement(value)
            except ValueError:
                choices = ", ".join(m.value for m in RevocationRequirement)
                raise PolicyError(key, f"expected one of {choices}") from None
        elif k == "decision_ttl":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise PolicyError(key, "expected a number of seconds")
            changes[k] = timedelta(seconds=value)
    revocation = changes.get("revocation", base.revocation)
    unknown = changes.get("revocation_unknown", base.revocation_unknown)
    if revocation is RevocationRequirement.REQUIRED and unknown is RevocationUnknown.SOFT_PASS:
        raise PolicyError("revocation" if "revocation" in changes else "revocation_unknown", _REQUIRED_WITH_SOFT_PASS)
    return replace(base, **changes)


def _names(key: str, value: Any) -> frozenset[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise PolicyError(key, "expected a list of names")
    return frozenset(value)


def policy_from_mapping(table: Mapping[str, Any], base: Policy = DEFAULT_POLICY) -> Policy:
    """One ``Policy`` from a ``[trust]``-style table; keys absent keep ``base``'s values.

    Sub-tables (``domains``) are ignored here: see ``policies_from_mapping``.
    """
    return _apply(base, {k: v for k, v in table.items() if not isinstance(v, Mapping)})


def policies_from_mapping(table: Mapping[str, Any]) -> DomainPolicies:
    """The ``[trust]`` table with its ``[trust.domains."d"]`` overrides.

    ```toml
    [trust]
    revocation_unknown = "temporary"
    [trust.domains."hisp.example.org"]
    revocation = "required"
    allow_sha1 = true
    required_policy_oids = ["1.3.6.1.4.1.41179.0.1.2"]
    ```
    """
    default = policy_from_mapping(table)
    domains_table = table.get("domains", {})
    if not isinstance(domains_table, Mapping):
        raise PolicyError("domains", "expected a table of domain tables")
    domains: dict[str, Policy] = {}
    for domain, sub in domains_table.items():
        if not isinstance(sub, Mapping):
            raise PolicyError(f"domains.{domain}", "expected a table")
        domains[domain.lower()] = _apply(default, sub)
    return DomainPolicies(default, domains)
