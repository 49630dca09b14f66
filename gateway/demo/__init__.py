"""``directgw demo``: the whole Direct story on one machine, told as it happens.

``pki`` makes the trust community, ``sites`` the two HISPs' data directories,
``inbox`` the EHR's mailbox, ``watch`` follows the gateways' logs, and
``story`` runs the acts and says what each step was and why it matters.
"""
