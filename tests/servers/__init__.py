"""Real servers on 127.0.0.1 high ports for the tests: Knot DNS, OpenLDAP slapd.

Each starts from files it writes into a test-owned directory and stops by its
own process id; none touches the system's instances. A missing binary skips
the test with a reason, except in CI (``CI=true``), where it fails: CI
installs them (.ci/packages.txt), so absence there is a broken build.
"""
