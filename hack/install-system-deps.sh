#!/usr/bin/env bash
# Installs the Debian packages the project needs (OpenMPI for MPI runs and tests, openssl for the cluster PKI).
set -euo pipefail
need=()
command -v mpirun >/dev/null || need+=(openmpi-bin libopenmpi-dev)
command -v openssl >/dev/null || need+=(openssl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing ${need[*]}: install them with apt-get (needs root)" >&2
  exit 1
fi
echo "[install-system-deps] apt-get install ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
