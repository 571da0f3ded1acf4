#!/usr/bin/env bash
# Creates the virtualenv and installs robofume with the pinned dependency set.
set -euo pipefail
VENV=${1:-.venv}
PYV=${2:-3.11}
find_python() {
  for cand in "python$PYV" "$HOME/.pyenv/versions/$PYV"*/bin/python "/usr/bin/python$PYV"; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$PYV'.split('.')))" 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    local v; v=$(pyenv versions --bare | grep -E "^$PYV(\.|$)" | tail -1)
    [ -n "$v" ] && echo "$(pyenv root)/versions/$v/bin/python" && return 0
  fi
  return 1
}
if [ ! -x "$VENV/bin/python" ]; then
  PY=$(find_python) || {
    echo "install: Python $PYV is required (dm-reverb 0.14 supports only 3.11)." >&2
    echo "  Debian/Ubuntu: sudo apt-get install python$PYV python$PYV-venv, or use pyenv." >&2
    exit 1
  }
  echo "install: creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
echo "install: installing robofume and the pinned dependencies into $VENV (first time: ~2-4 min)"
"$VENV/bin/pip" install -q --disable-pip-version-check -U -c constraints.txt pip setuptools wheel
"$VENV/bin/pip" install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
"$VENV/bin/pip" check >/dev/null || { "$VENV/bin/pip" check; exit 1; }
echo "install: done"
