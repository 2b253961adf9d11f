#!/usr/bin/env bash
# Install the system packages pulsecast needs when they are missing (Debian/Ubuntu):
# a Java 17+ runtime and Maven (the JVM servers and their artifacts) and kcat
# (the outside Kafka client the integration tests compare against), Prometheus and
# Alertmanager (`pulsecast up --with prometheus`; their promtool and amtool check the
# generated configuration and the alert rules in the tests).
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
command -v mvn  >/dev/null 2>&1 || missing+=(maven)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
# Chromium renders the report's PNG charts (Kaleido drives it; it downloads no browser).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# chromedriver lets the dashboard's browser test drive that Chromium (Selenium).
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# Servers installed without recommends (no node exporter); pulsecast runs its own processes.
servers=()
command -v prometheus >/dev/null 2>&1 || servers+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || servers+=(prometheus-alertmanager)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || servers+=(postgresql)

if [ ${#missing[@]} -eq 0 ] && [ ${#servers[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "error: missing system packages: ${missing[*]} ${servers[*]} (install them with apt-get as root)" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing system packages: ${missing[*]} ${servers[*]}; install them with your package manager" >&2
  exit 1
fi

echo "installing system packages: ${missing[*]} ${servers[*]}"
$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ${#servers[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${servers[@]}" >/dev/null
  # The packages enable system daemons on the default ports (9090, 9093, 5432); pulsecast
  # starts its own, with its configuration, data and ports, so those just installed are stopped.
  if [ -d /run/systemd/system ]; then
    for package in "${servers[@]}"; do
      $SUDO systemctl disable --now "${package}.service" >/dev/null 2>&1 || true
    done
  fi
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _; do
      $SUDO pg_ctlcluster "$version" "$cluster" stop >/dev/null 2>&1 || true
    done
  fi
fi
