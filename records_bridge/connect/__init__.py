"""Patient Connect: connect requests, a code and a secret question (spec section 3)."""
