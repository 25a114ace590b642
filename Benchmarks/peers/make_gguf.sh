#!/usr/bin/env bash
# Converts the benchmark checkpoint to GGUF bf16 and q8_0 with convert_hf_to_gguf.py as shipped in the
# llama-cpp-python sdist (vendor/llama.cpp) and its gguf-py. Usage: make_gguf.sh VENV PYTHON MODEL WORK
# [OUT] (PYTHON needs torch, numpy, safetensors, transformers: convert_hf_to_gguf.py imports them.)
# OUT is the directory of the GGUF files (default WORK/gguf); TYPES (default "bf16 q8_0") the types made.
set -uo pipefail
VENV=$1 PY=$2 MODEL=$3 WORK=$4 OUT=${5:-$4/gguf}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC="$WORK/llama-src"
mkdir -p "$OUT"
if [[ ! -f "$SRC/convert_hf_to_gguf.py" ]]; then
    version=$("$VENV/bin/python" -c "import llama_cpp; print(llama_cpp.__version__)")
    rm -rf "$WORK/sdist" && mkdir -p "$WORK/sdist"
    "$VENV/bin/pip" download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$WORK/sdist" || exit 1
    archive=$(ls "$WORK/sdist"/llama_cpp_python-*.tar.gz | head -1)
    rm -rf "$SRC" && mkdir -p "$SRC"
    tar -xzf "$archive" -C "$SRC" --strip-components=3 --wildcards '*/vendor/llama.cpp/*' || exit 1
fi
stamp=$(cat "$MODEL/.made" 2>/dev/null)
for type in ${TYPES:-bf16 q8_0}; do
    file="$OUT/model-$type.gguf"
    if [[ -f "$file" && "$(cat "$file.made" 2>/dev/null)" == "$stamp" ]]; then continue; fi
    rm -f "$file"
    echo "converting to $type" >&2
    PYTHONPATH="$SRC/gguf-py" "$PY" "$HERE/convert_gguf.py" "$SRC" "$MODEL" --outtype "$type" --outfile "$file" >&2 \
        && printf '%s' "$stamp" > "$file.made" || rm -f "$file"
done
