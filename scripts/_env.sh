# Sourced by scripts/demo and scripts/check: make .venv with clickwise installed (extras in $1).
# Idempotent: reinstalls only when pyproject.toml changes or more extras are asked for than were
# installed (the demo needs none; the checks need dev). Modules are byte-compiled when first imported,
# not all at install time. The demo installs with uv (itself from pip) when it can: a first install in
# a third of pip's time.
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
digest="$(sha256sum pyproject.toml | cut -c1-16)"
stamp=.venv/.clickwise-installed
installed="$(cat "$stamp" 2>/dev/null || true)"
# "<digest>[dev]" serves a demo too; "<digest>[]" does not serve the checks
if [ "$installed" != "$digest[$extras]" ] && { [ -n "$extras" ] || [ "${installed%%\[*}" != "$digest" ]; }; then
  echo "installing clickwise${extras:+[$extras]} into .venv (first run only)" >&2
  pip_quiet() { .venv/bin/python -m pip --quiet --disable-pip-version-check "$@" 2>&1 | grep -v '^WARNING: Location' >&2 || true; }
  if [ -z "$extras" ] && [ "${CLICKWISE_INSTALLER:-uv}" = uv ]; then
    # the demo: uv fetches and unpacks the wheels in parallel (7 s here where pip takes 26 s); pip if it fails
    pip_quiet install 'uv>=0.5'
    if ! .venv/bin/uv pip install --quiet --python .venv/bin/python -e . >&2; then
      echo "uv could not install clickwise; using pip (set CLICKWISE_INSTALLER=pip to go straight there)" >&2
      pip_quiet install --no-compile -e .
    fi
  else
    [ -z "$extras" ] || pip_quiet install --upgrade pip
    pip_quiet install --no-compile -e ".${extras:+[$extras]}"
  fi
  .venv/bin/python -c 'import clickwise' || { echo "install failed" >&2; exit 2; }
  echo "$digest[$extras]" > "$stamp"
fi
