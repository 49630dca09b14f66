"""The tests' PKI: the throwaway PKI builder shipped for the demo (gateway.devpki)."""

from gateway.devpki import *  # noqa: F403
from gateway.devpki import (
    NOW,
    Hisp,
    Issued,
    address_leaf,
    hisp,
    intermediate,
    issue,
    new_key,
    org_leaf,
    root,
)

__all__ = ["NOW", "Hisp", "Issued", "address_leaf", "hisp", "intermediate", "issue", "new_key", "org_leaf", "root"]
