#!/usr/bin/env bash
# Installs the Debian packages incident-console runs against, when they are missing.
# Usage: scripts/ensure-system-packages.sh [package ...]   (default: the demo/test set)
# As root it runs apt-get; otherwise it names the missing packages and fails.
set -euo pipefail

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(prometheus prometheus-alertmanager prometheus-postgres-exporter
                                prometheus-blackbox-exporter prometheus-node-exporter postgresql)

have() {
  case "$1" in
    prometheus) command -v prometheus >/dev/null && command -v promtool >/dev/null ;;
    prometheus-alertmanager) command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null ;;
    postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
                && ls /usr/share/postgresql/*/extension/pg_stat_statements.control >/dev/null 2>&1 ;;
    chromium) command -v chromium >/dev/null ;;
    prometheus-*-exporter) [ -x "/usr/bin/$1" ] ;;  # the demo runs /usr/bin/prometheus-<name>-exporter
    *) dpkg -s "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
for p in "${want[@]}"; do have "$p" || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "incident-console needs the Debian package(s): ${missing[*]}" >&2
  echo "install them with: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian package(s): ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
# Debian's maintainer scripts may start the packaged daemons; the console runs its own.
for svc in prometheus prometheus-alertmanager; do
  pkill -x "$svc" 2>/dev/null || true
done
for svc in prometheus-postgres-exporter prometheus-blackbox-exporter prometheus-node-exporter; do
  pkill -f "^/usr/bin/$svc( |\$)" 2>/dev/null || true  # names longer than the 15 characters -x sees
done
for p in "${missing[@]}"; do
  have "$p" || { echo "package $p installed but its programs were not found" >&2; exit 1; }
done
