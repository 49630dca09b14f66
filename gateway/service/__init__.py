"""`directgw serve`: the composition root and what it owns (SMTP, the outbound loop, HTTP health and metrics)."""
