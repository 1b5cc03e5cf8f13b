#!/bin/sh
# Headless Chromium for the report screenshot test (tests/test_annual_report.py): Debian's
# `chromium` package. Idempotent: does nothing when /usr/bin/chromium is there. CI runs
# `make test` as root on a clean Debian machine; elsewhere install the package by hand.
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-chromium: /usr/bin/chromium is missing; run 'apt-get install chromium' as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
