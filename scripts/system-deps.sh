#!/usr/bin/env bash
# Installs the Debian packages headless MuJoCo rendering needs (EGL through Mesa), only when
# they are missing. Without root it prints the command to run. ROBOFUME_OSMESA=1 also
# installs OSMesa, the software fallback (`--env.render_backend osmesa`).
set -euo pipefail
PKGS=(libegl1 libegl-mesa0 libgl1-mesa-dri)
if [ "${ROBOFUME_OSMESA:-0}" = "1" ]; then PKGS+=(libosmesa6); fi
missing=()
if ! command -v dpkg >/dev/null 2>&1; then
  echo "system-deps: not a Debian/Ubuntu system; make sure EGL (Mesa) or OSMesa is installed." >&2
  exit 0
fi
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "system-deps: installing Debian packages for headless rendering: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo"
else
  echo "system-deps: no root. Run by hand, then re-run make:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
