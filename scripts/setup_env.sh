#!/usr/bin/env bash
# Create .venv/ and install the pinned stack, once. Idempotent: a stamp file records the hash of the
# requirement files and pyproject.toml, so a second call with nothing changed returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  FLAVOUR=cuda
else
  FLAVOUR=cpu
fi
STAMP=$VENV/.recsys-installed
HASH=$(cat requirements/*.txt pyproject.toml | sha256sum | cut -c1-16)-$FLAVOUR
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  exit 0
fi

echo "[setup] creating $VENV ($FLAVOUR stack) ..."
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
pip_install() {
  # This machine's pip config names local index folders that may be absent; drop pip's notes about them.
  "$VENV/bin/python" -m pip --disable-pip-version-check install -q "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}
pip_install -r requirements/$FLAVOUR.txt -r requirements/dev.txt
pip_install --no-deps -r requirements/torchrec.txt
pip_install --no-deps -e .
echo "$HASH" > "$STAMP"
echo "[setup] done"
