#!/usr/bin/env bash
# Retrain the demo checkpoint Models/kjv-moe (Scripts/train-demo-model.py) from scratch.
#
#   Scripts/train-demo-model.sh [--venv DIR] [--skip-install] [--out DIR] [-- ARGS...]
#
#   --venv DIR       virtualenv to create/reuse (default: <repo>/.venv-reference, as make-reference-fixtures.sh)
#   --skip-install   use the venv as it is
#   --out DIR        where to write the checkpoint (default: <repo>/Models/kjv-moe)
#   -- ARGS...       passed to train-demo-model.py (e.g. -- --steps 560 --seed 1)
#
# Installs Debian's bible-kjv (the corpus) through Deploy/install-deps.sh --training and the pinned
# torch/transformers/tokenizers of Scripts/reference/requirements.txt from PyPI. Then writes the
# checkpoint's transformers reference (Scripts/reference/demo_model_fixture.py) that the tests pin.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
VENV="$REPO_ROOT/.venv-reference"
OUT="$REPO_ROOT/Models/kjv-moe"
SKIP_INSTALL=0
PASS=()
die() { echo "train-demo-model: error: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv) [[ $# -ge 2 ]] || die "--venv needs a directory"; VENV="$2"; shift 2 ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a directory"; OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; PASS=("$@"); break ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

command -v bible >/dev/null 2>&1 || bash "$REPO_ROOT/Deploy/install-deps.sh" --training
command -v bible >/dev/null 2>&1 || die "the bible program (Debian package bible-kjv) is not installed"
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV" || die "could not create venv at $VENV"
if [[ "$SKIP_INSTALL" -eq 0 ]]; then
  "$VENV/bin/python" -m pip install -q -r "$SCRIPT_DIR/reference/requirements.txt" || die "pip install failed"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
"$VENV/bin/python" "$SCRIPT_DIR/train-demo-model.py" --out "$OUT" ${PASS[@]+"${PASS[@]}"}
"$VENV/bin/python" "$SCRIPT_DIR/reference/demo_model_fixture.py" --model "$OUT"
