"""Trust decisions: RFC 5280 path validation, revocation and Direct certificate policy."""
