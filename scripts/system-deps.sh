#!/usr/bin/env bash
# Installs the Debian packages the test suite and the benchmarks start for real:
# openssl (the seed's certificate recipe), curl (what users type), Apache httpd with mod_ssl and nginx
# (real backends), HAProxy (the router shiftroute is compared with), etcd (the distributed store),
# wrk and h2load (load generators).
#
# Root: installs with apt-get. Not root: prints the exact command and fails, so nothing is skipped silently.
set -euo pipefail

# command -> Debian package
declare -A wanted=(
  [openssl]=openssl
  [curl]=curl
  [apache2]=apache2
  [nginx]=nginx-light
  [haproxy]=haproxy
  [etcd]=etcd-server
  [etcdctl]=etcd-client
  [wrk]=wrk
  [h2load]=nghttp2-client
)

missing=()
for cmd in "${!wanted[@]}"; do
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1; then
    missing+=("${wanted[$cmd]}")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

IFS=$'\n' sorted=($(printf '%s\n' "${missing[@]}" | sort -u)); unset IFS
cmdline="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${sorted[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing Debian packages: ${sorted[*]}" >&2
  echo "system-deps: run as root:  sudo sh -c '$cmdline'" >&2
  exit 1
fi
echo "system-deps: installing ${sorted[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${sorted[@]}" >/dev/null
# Debian starts the services it installs; the tests start their own instances on free ports.
for svc in apache2 nginx haproxy etcd; do
  (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || service "$svc" stop >/dev/null 2>&1 || true
done
