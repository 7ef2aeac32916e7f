#!/usr/bin/env bash
# The long soak of tests/hosts (soak.rs): REQ/REP through a device, PUB/SUB,
# PUSH/PULL and SURVEYOR across five test hosts, fault proxies on the links
# and a rotation of faults (partition, a server killed, link down, a storm of
# loss, the publisher killed, a host powered off), an RSS ceiling asserted.
# 600 s by default (the suite runs the same test for 120 s); the first
# argument changes it. Needs root and iproute2, as the suite does.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-600}"
# bounded: the build, the soak and its teardown cannot outlive this
SPSTACK_SOAK_SECS="$secs" timeout "$((secs + 1200))" \
  cargo test --test hosts -- --exact soak::soak --nocapture
