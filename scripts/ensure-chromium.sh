#!/bin/sh
# Headless Chromium for the browser tests (tests/test_annual_report.py, tests/test_codec.py,
# tests/test_board.py): Debian's `chromium`, and `fonts-noto-cjk` so that Chinese pages render
# with real glyphs in screenshots (not boxes). Idempotent: does nothing when both are there.
# CI runs `make test` as root on a clean Debian machine; elsewhere install the packages by hand.
set -eu
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -d /usr/share/fonts/opentype/noto ] && ls /usr/share/fonts/opentype/noto/NotoSansCJK-* >/dev/null 2>&1 \
    || missing="$missing fonts-noto-cjk"
if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-chromium: missing:$missing; run 'apt-get install$missing' as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq $missing >/dev/null
/usr/bin/chromium --version
