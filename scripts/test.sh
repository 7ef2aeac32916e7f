#!/usr/bin/env bash
# Runs every test spstack has, on a fresh Debian machine or a used one.
# Installs what the interop tests need (nanocat from nanomsg-utils, nngcat
# as spcat's reference, headless Chromium for the browser test, tshark for
# the dissector test; pynng and noiseprotocol from PyPI; cargo-deny) and what
# the host tests need (`ip` from iproute2; they make network namespaces, so
# run this as root), then:
# fmt, clippy, cargo deny, the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nanocat >/dev/null 2>&1 || need_apt+=(nanomsg-utils)
command -v nngcat >/dev/null 2>&1 || need_apt+=(nng-utils)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v tshark >/dev/null 2>&1 || need_apt+=(tshark)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]} (apt)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  # wireshark-common asks whether non-root users may capture: they need
  # not (the dissector test captures as root)
  echo "wireshark-common wireshark-common/install-setuid boolean false" \
    | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
if ! python3 -c 'import pynng' >/dev/null 2>&1; then
  echo "== installing pynng 0.9.0 (pip)"
  python3 -m pip install --quiet --root-user-action=ignore pynng==0.9.0 2>/dev/null \
    || python3 -m pip install --quiet pynng==0.9.0
fi
if ! python3 -c 'import noise.connection' >/dev/null 2>&1; then
  echo "== installing noiseprotocol 0.3.1 (pip)"
  python3 -m pip install --quiet --root-user-action=ignore noiseprotocol==0.3.1 2>/dev/null \
    || python3 -m pip install --quiet noiseprotocol==0.3.1
fi
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "== installing cargo-deny"
  cargo install --locked --quiet cargo-deny
fi

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== feature combinations of spstack (each alone, a few together, none)"
for features in "" tcp ipc inproc metrics reliable tls ws axum quic noise integrity "tcp,noise,integrity" "tls,ws" full; do
  cargo clippy -p spstack --lib --no-default-features --features "$features" --quiet -- -D warnings \
    || { echo "== spstack does not build with features [$features]"; exit 1; }
done
echo "== cargo package (every publishable crate; --no-verify: the crates depend on
# each other by version and none is on crates.io yet, so a packaged crate
# cannot be built from the registry; the workspace build above covers them)"
cargo package --workspace --exclude spstack-example-star --exclude sp-fuzz-targets --no-verify --offline --allow-dirty --quiet
echo "== cargo deny"
cargo deny check bans licenses sources 2>&1 | tail -n 1
echo "== cargo test"
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/spstack-test.log | grep -E '^(test result|running|error|failures:|    [a-z_:]+$)|FAILED|panicked' || true
if grep -qE 'test result: FAILED|^error' /tmp/spstack-test.log; then
  echo "== some tests failed; full log in /tmp/spstack-test.log"
  exit 1
fi
passed=$(grep -oE '[0-9]+ passed' /tmp/spstack-test.log | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed' /tmp/spstack-test.log | awk '{s+=$1} END {print s+0}')
ignored=$(grep -oE '[0-9]+ ignored' /tmp/spstack-test.log | awk '{s+=$1} END {print s+0}')
echo "total: $passed passed, $failed failed, $ignored skipped"
