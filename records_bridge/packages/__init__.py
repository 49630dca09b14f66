"""Drop-Off/Pick-Up: packages sealed with an answer-derived key (spec section 4)."""
