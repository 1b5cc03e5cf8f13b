#!/bin/sh
# LibreOffice headless, pdftoppm and a CJK font for the document tests (tests/test_documents*.py):
# a .docx is rendered to PDF with `soffice --headless --convert-to pdf`, a page to PNG with
# pdftoppm, and Chinese text needs Noto Sans/Serif CJK (fonts-noto-cjk; the annual report's charts
# are drawn with it too). Debian packages libreoffice-writer-nogui, poppler-utils, fonts-noto-cjk.
# Idempotent: does nothing when all three are there. CI runs `make test` as root on a clean Debian
# machine; elsewhere install the packages by hand.
set -eu
if command -v soffice >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1 \
        && [ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-libreoffice: run 'apt-get install libreoffice-writer-nogui poppler-utils fonts-noto-cjk' as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends libreoffice-writer-nogui poppler-utils fonts-noto-cjk >/dev/null
soffice --version
