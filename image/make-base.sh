#!/usr/bin/env bash
# The offline stand-in for `python:3.11-slim-bookworm`: a Debian root filesystem made by mmdebstrap
# from Debian's packages, as an uncompressed tar. Usage: image/make-base.sh OUT.tar
set -euo pipefail
out=$1
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
here=$(cd "$(dirname "$0")" && pwd)
packages=$(grep -v '^#' "$here/base-packages.txt" | xargs | tr ' ' ',')
tmp="$out.partial"
rm -rf "$tmp"
# No documentation, manual pages or translations (copyright files stay); no apt lists or caches.
mmdebstrap --quiet --format=tar --variant=minbase --include="$packages" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
  "$suite" "$tmp" \
  "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main"
mv "$tmp" "$out"
