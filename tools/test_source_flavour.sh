#!/usr/bin/env bash
# The test suite on RecStudio's GitHub source ("source" flavour), in its own virtual environment so
# that the PyPI flavour installed by `make install` stays untouched.  Called by `make test`.
#   bash tools/test_source_flavour.sh [ARCHIVE]      (default: ../shared/host/recstudio-github-6f628dd.tar.gz)
# The venv sees the system packages (torch, pandas, ... from `make install`); inside it the source
# RecStudio shadows the PyPI one.  It adds what the source flavour imports: nni, tabulate, faiss-cpu,
# pydantic.  Re-runs reuse the venv (.venv-source/, ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
ARCHIVE="${1:-../shared/host/recstudio-github-6f628dd.tar.gz}"
VENV="${SOURCE_VENV:-.venv-source}"
if [ ! -f "$ARCHIVE" ]; then
  echo "skipped: the GitHub-source RecStudio archive $ARCHIVE is absent (it lives in ../shared/host/); only the PyPI flavour was tested"
  exit 0
fi
stamp="$VENV/.installed-$(basename "$ARCHIVE")"
if [ ! -f "$stamp" ]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check nni tabulate faiss-cpu pydantic
  src="$VENV/src"; mkdir -p "$src"; tar xzf "$ARCHIVE" -C "$src"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$src/RecStudio"
  touch "$stamp"
fi
flavour=$("$VENV/bin/python" -c "import recstudio.data.dataset as d; print('source' if hasattr(d, 'TripletDataset') else 'pypi')")
if [ "$flavour" != source ]; then
  echo "error: $VENV does not import the source flavour of RecStudio (got $flavour)" >&2
  exit 1
fi
echo "== test suite on the GitHub-source RecStudio ($ARCHIVE)"
"$VENV/bin/python" -m pytest -q tests "${@:2}"
