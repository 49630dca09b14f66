"""Tables of the bridge's sign-in and OAuth state (migration 0007).

Nothing secret is stored in clear: session, code and token columns hold the
SHA-256 of 256-bit random values (a digest of a value that cannot be guessed
cannot be reversed or brute-forced, so a fast hash is enough and lookups
stay one index probe); client secrets hold an HMAC under the bridge key
(see ``clients``).

A *grant* is one client's authorization for one person on one record; it
never expires and ends only by revocation (spec section 1). A *token family*
is what one authorization (one code, or one client-credentials request)
started: its grants, its scopes, and every access and refresh token rotated
from it, so that replaying a code or an old refresh token revokes exactly
what came from it (RFC 6749 section 4.1.2, OAuth 2.0 Security BCP 4.14).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from gateway.store.schema import UtcDateTime, metadata

bridge_sessions = Table(
    "bridge_sessions",
    metadata,
    # SHA-256 hex of the cookie's random value
    Column("token_hash", String(64), primary_key=True),
    Column("person_id", Integer, ForeignKey("persons.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    # confidential or public (ClientType)
    Column("type", String(16), nullable=False),
    # HMAC-SHA256 hex of the secret under the bridge key; NULL for public clients
    Column("secret_hash", String(64), nullable=True),
    # space-separated scope lists
    Column("allowed_scopes", Text, nullable=False),
    Column("required_scopes", Text, nullable=False),
    Column("optional_scopes", Text, nullable=False),
    Column("multi_record", Boolean, nullable=False),
    Column("offline_allowed", Boolean, nullable=False),
    Column("connect_enabled", Boolean, nullable=False),
    Column("writes_to_inbox", Boolean, nullable=False),
    # an RFC 7591 per-install instance: its master, whose settings it inherits
    Column("master_id", Integer, ForeignKey("oauth_clients.id", ondelete="CASCADE"), nullable=True, index=True),
    Column("created_at", UtcDateTime, nullable=False),
)

oauth_redirect_uris = Table(
    "oauth_redirect_uris",
    metadata,
    Column("client_pk", Integer, ForeignKey("oauth_clients.id", ondelete="CASCADE"), nullable=False),
    Column("uri", String(2000), nullable=False),
    PrimaryKeyConstraint("client_pk", "uri", name="pk_oauth_redirect_uris"),
)

grants = Table(
    "grants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_pk", Integer, ForeignKey("oauth_clients.id", ondelete="CASCADE"), nullable=False),
    Column("person_id", Integer, ForeignKey("persons.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("record_id", Integer, ForeignKey("records.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("scopes", Text, nullable=False),
    Column("offline", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    # none, reauth_required, reauth_not_possible (AuthAction)
    Column("auth_action", String(32), nullable=False),
    UniqueConstraint("client_pk", "person_id", "record_id", name="uq_grants_client_pk"),
)

oauth_codes = Table(
    "oauth_codes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("client_pk", Integer, ForeignKey("oauth_clients.id", ondelete="CASCADE"), nullable=False),
    Column("person_id", Integer, ForeignKey("persons.id", ondelete="CASCADE"), nullable=False),
    # the selected record first, then any others (multi_record), comma-separated ids
    Column("record_ids", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("redirect_uri", String(2000), nullable=False),
    # BASE64URL(SHA256(code_verifier)), RFC 7636 section 4.2
    Column("code_challenge", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
)

token_families = Table(
    "token_families",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_pk", Integer, ForeignKey("oauth_clients.id", ondelete="CASCADE"), nullable=False, index=True),
    # NULL for client-credentials families
    Column("person_id", Integer, ForeignKey("persons.id", ondelete="CASCADE"), nullable=True),
    Column("code_id", Integer, ForeignKey("oauth_codes.id", ondelete="SET NULL"), nullable=True, index=True),
    # the selected record (the token response's `patient`), NULL without one
    Column("record_id", Integer, ForeignKey("records.id", ondelete="CASCADE"), nullable=True),
    Column("scopes", Text, nullable=False),
    Column("offline", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

family_grants = Table(
    "family_grants",
    metadata,
    Column("family_id", Integer, ForeignKey("token_families.id", ondelete="CASCADE"), nullable=False),
    Column("grant_id", Integer, ForeignKey("grants.id", ondelete="CASCADE"), nullable=False, index=True),
    PrimaryKeyConstraint("family_id", "grant_id", name="pk_family_grants"),
)

oauth_tokens = Table(
    "oauth_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("family_id", Integer, ForeignKey("token_families.id", ondelete="CASCADE"), nullable=False, index=True),
    # access or refresh (TokenKind)
    Column("kind", String(16), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    # NULL: a refresh token, alive while its family and grants are (spec section 2)
    Column("expires_at", UtcDateTime, nullable=True),
    # a refresh token once rotated; presenting it again revokes the family
    Column("used_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
)
