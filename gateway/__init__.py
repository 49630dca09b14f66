"""directgw: a Secure Direct messaging gateway (HISP)."""
