#!/usr/bin/env bash
# Regenerate Switchyard's reference fixtures (Tests/Fixtures) from Hugging Face transformers.
#
#   Scripts/make-reference-fixtures.sh [--venv DIR] [--python PY] [--skip-install] [--out DIR] [-- ARGS...]
#
#   --venv DIR       virtualenv to create/reuse (default: <repo>/.venv-reference, gitignored)
#   --python PY      interpreter used to create the venv (default: $PYTHON or python3)
#   --skip-install   do not pip-install; use the venv as it is (e.g. an existing reference venv)
#   --out DIR        fixtures root (default: <repo>/Tests/Fixtures)
#   -- ARGS...       passed through to model_fixtures.py (e.g. -- --only top1,top2)
#
# Pinned versions: Scripts/reference/requirements.txt. Nothing is downloaded from the HF hub;
# models and tokenizers are built locally. Runnable from any working directory.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
REQS="$SCRIPT_DIR/reference/requirements.txt"
VENV="${REFERENCE_VENV:-$REPO_ROOT/.venv-reference}"
PY="${PYTHON:-python3}"
OUT="$REPO_ROOT/Tests/Fixtures"
SKIP_INSTALL=0
PASS=()

die() { echo "make-reference-fixtures: error: $*" >&2; exit 1; }
say() { echo "==> $*"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv) [[ $# -ge 2 ]] || die "--venv needs a directory"; VENV="$2"; shift 2 ;;
    --python) [[ $# -ge 2 ]] || die "--python needs an interpreter"; PY="$2"; shift 2 ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a directory"; OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; PASS=("$@"); break ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

[[ -f "$REQS" ]] || die "missing $REQS"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

if [[ -x "$VENV/bin/python" ]]; then
  say "reusing venv $VENV"
else
  command -v "$PY" >/dev/null 2>&1 || die "python interpreter '$PY' not found (set --python or \$PYTHON)"
  say "creating venv $VENV with $("$PY" --version 2>&1)"
  "$PY" -m venv "$VENV" || die "could not create venv at $VENV"
fi
VPY="$VENV/bin/python"

if [[ "$SKIP_INSTALL" -eq 0 ]]; then
  STAMP="$VENV/.switchyard-reference-requirements"
  if [[ -f "$STAMP" ]] && cmp -s "$STAMP" "$REQS"; then
    say "pinned requirements already installed (stamp $STAMP)"
  else
    say "installing pinned requirements from $REQS (torch is large; this can take a while)"
    "$VPY" -m pip install --upgrade pip >/dev/null || die "pip upgrade failed"
    "$VPY" -m pip install -r "$REQS" || die "pip install -r $REQS failed"
    cp "$REQS" "$STAMP"
  fi
else
  say "skipping pip install (--skip-install)"
fi

"$VPY" - <<'PYEOF' || die "reference venv is missing packages; rerun without --skip-install"
import torch, transformers, tokenizers, safetensors, numpy
print(f"==> torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, safetensors {safetensors.__version__}, numpy {numpy.__version__}")
PYEOF

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

say "model fixtures -> $OUT/models"
"$VPY" "$SCRIPT_DIR/reference/model_fixtures.py" --out "$OUT" ${PASS[@]+"${PASS[@]}"}

TOK_SCRIPT="$SCRIPT_DIR/reference/tokenizer_fixtures.py"
if [[ -f "$TOK_SCRIPT" ]]; then
  say "tokenizer fixtures ($TOK_SCRIPT)"
  "$VPY" "$TOK_SCRIPT"
else
  say "no $TOK_SCRIPT yet; skipping tokenizer fixtures"
fi

# The chat-template renderings Switchyard's Jinja interpreter is checked against (each file records
# the script and the transformers, tokenizers and jinja2 versions that rendered it).
say "chat-template fixtures"
"$VPY" "$SCRIPT_DIR/reference/chat_template_fixtures.py"

say "done: $(du -sh "$OUT" | cut -f1) in $OUT"
