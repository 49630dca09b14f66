"""Neutral helpers every layer may use: the bounded HTTP fetcher, the rule on
where it may connect, the expiring cache and single-flight sharing.

Nothing here imports ``gateway.core``, ``trust``, ``anchors`` or
``gateway.discovery`` (tests/test_layers.py checks it), so each of them can
depend on this package without depending on each other.
"""
