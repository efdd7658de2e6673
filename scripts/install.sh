#!/usr/bin/env bash
# Create or refresh the project's virtualenv (.venv) idempotently.
#   torch==2.13.0 (CPU wheel on local disk, or the user's own CUDA torch already in the venv),
#   numpy + cython, fairseq-fixed==0.12.3.1 (--no-deps --no-build-isolation),
#   the pinned runtime needs in requirements/runtime.txt, the Hugging Face export extra (requirements/hf.txt),
#   the test tools (requirements/test.txt), and balkd-fairseq in editable mode; torch never changes.
# A second run on a ready venv only compares a stamp and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
FAIRSEQ_SPEC="fairseq-fixed==0.12.3.1"

stamp_inputs() { cat requirements/build.txt requirements/runtime.txt requirements/hf.txt requirements/test.txt setup.py scripts/install.sh; }
want=$(stamp_inputs | sha256sum | cut -d' ' -f1)
stamp="$VENV/.balkd-install-stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import fairseq, balkd_fairseq" 2>/dev/null; then
  echo "[install] $VENV is up to date"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
# Build requirements. torch is skipped when a torch is already installed (e.g. the user's CUDA build),
# so pip never resolves a different torch.
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  grep -v '^torch' requirements/build.txt > "$VENV/.build-no-torch.txt"
  pip install -q -r "$VENV/.build-no-torch.txt"
else
  pip install -q -r requirements/build.txt
fi
if ! pip show -q fairseq-fixed >/dev/null 2>&1; then
  echo "[install] building $FAIRSEQ_SPEC (about 5 minutes the first time; pip caches the wheel)"
  pip install -q --no-deps --no-build-isolation "$FAIRSEQ_SPEC"
fi
# Everything after torch is installed under a constraint that freezes the torch and numpy now in the venv
# (the CPU wheel, or the user's own CUDA build), so no dependency can make pip resolve another torch.
"$VENV/bin/python" -m pip --disable-pip-version-check freeze | grep -iE '^(torch|numpy)==' > "$VENV/.constraints.txt"
pip install -q --no-build-isolation -c "$VENV/.constraints.txt" -r requirements/runtime.txt
# The Hugging Face export (pip install .[hf]) and the test-only packages.
pip install -q -c "$VENV/.constraints.txt" -r requirements/hf.txt -r requirements/test.txt
pip install -q --no-deps --no-build-isolation -e .
if "$VENV/bin/python" -c "import torchaudio" 2>/dev/null; then
  echo "[install] error: torchaudio is installed in $VENV; it must not be (it pulls another torch)" >&2
  exit 1
fi
echo "$want" > "$stamp"
echo "[install] $VENV ready: $("$VENV/bin/python" -c 'import torch, fairseq; print("torch", torch.__version__, "fairseq", fairseq.__version__)')"
