# Sourced by scripts/demo and scripts/check: make .venv with clickwise installed (extras in $1).
# Idempotent: reinstalls only when pyproject.toml or the extras change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${1:-}"
python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin="$candidate"; break; fi
  done
fi
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "clickwise needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $("$python_bin" --version)" >&2
  "$python_bin" -m venv .venv
fi
want="$(sha256sum pyproject.toml | cut -c1-16)[$extras]"
stamp=.venv/.clickwise-installed
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "installing clickwise${extras:+[$extras]} into .venv (first run takes a minute)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}" 2>&1 \
    | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -c 'import clickwise' || { echo "install failed" >&2; exit 2; }
  echo "$want" > "$stamp"
fi
