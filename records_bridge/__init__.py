"""The records bridge: an HTTP service over patients' records (see shared/specs/records-bridge.md)."""
