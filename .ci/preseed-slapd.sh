#!/usr/bin/env bash
# Answers slapd's debconf questions before apt-get installs it, so the install
# is non-interactive (TOOLING.md). The tests never use this system instance:
# tests/servers/slapd.py runs its own slapd from a slapd.conf on a high port.
set -euo pipefail
printf '%s\n' \
  'slapd slapd/no_configuration boolean false' \
  'slapd slapd/domain string example.test' \
  'slapd shared/organization string Example' \
  'slapd slapd/password1 password pw' \
  'slapd slapd/password2 password pw' | debconf-set-selections
