#!/bin/sh
# Debian packages the course uses: Chromium for the browser test of the built site, and
# the Fashion-MNIST files (an offline data source of chapter 4). Installs what is missing.
set -eu
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || missing="$missing dataset-fashion-mnist"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  SUDO=sudo
  command -v sudo >/dev/null 2>&1 || {
    echo "Missing Debian packages:$missing. Install them as root: apt-get install -y$missing" >&2
    exit 1
  }
else
  SUDO=
fi
echo "Installing Debian packages:$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
