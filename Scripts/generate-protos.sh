#!/usr/bin/env bash
# Regenerates the protobuf-c C code in Sources/CProtobufC from Protos/ with protoc-c.
#
#   Scripts/generate-protos.sh          write Sources/CProtobufC/<name>.pb-c.c and
#                                       Sources/CProtobufC/include/<name>.pb-c.h
#   Scripts/generate-protos.sh --check  regenerate into a temporary directory and compare with the
#                                       committed files; exit 1 (with a diff) when they differ
#
# Runnable from any directory. Needs protoc-c (Debian/Ubuntu: protobuf-c-compiler); exits 2
# without it. Every .proto lives in Protos/switchyard/v1/ and is compiled with that directory as
# the import root, so the generated files are flat and include each other by bare name.
set -euo pipefail

mode=write
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "generate-protos.sh: unknown argument '$1' (expected no argument or --check)" >&2; exit 64 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
proto_dir="$root/Protos/switchyard/v1"
c_dir="$root/Sources/CProtobufC"
h_dir="$c_dir/include"
protoc_c="${PROTOC_C:-protoc-c}"

if ! command -v "$protoc_c" >/dev/null 2>&1; then
  echo "generate-protos.sh: protoc-c not found (install protobuf-c-compiler, or set PROTOC_C)" >&2
  exit 2
fi

shopt -s nullglob
protos=("$proto_dir"/*.proto)
if [ ${#protos[@]} -eq 0 ]; then
  echo "generate-protos.sh: no .proto files in $proto_dir" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Generate into $work/out, then arrange into $work/tree/{c,h} with the committed layout.
mkdir -p "$work/out" "$work/tree/include"
(cd "$proto_dir" && "$protoc_c" --proto_path=. --c_out="$work/out" "${protos[@]##*/}")
for f in "$work/out"/*.pb-c.c; do cp "$f" "$work/tree/"; done
for f in "$work/out"/*.pb-c.h; do cp "$f" "$work/tree/include/"; done

if [ "$mode" = check ]; then
  status=0
  # Compare both directions so stale committed files are caught too.
  diff -ru \
    <(cd "$work/tree" && find . -name '*.pb-c.[ch]' | sort) \
    <(cd "$c_dir" && find . -name '*.pb-c.[ch]' | sort) >/dev/null || {
    echo "generate-protos.sh --check: the set of generated files differs from the committed set:" >&2
    diff -u \
      <(cd "$work/tree" && find . -name '*.pb-c.[ch]' | sort) \
      <(cd "$c_dir" && find . -name '*.pb-c.[ch]' | sort) >&2 || true
    status=1
  }
  for f in $(cd "$work/tree" && find . -name '*.pb-c.[ch]' | sort); do
    if [ -f "$c_dir/$f" ] && ! diff -u "$c_dir/$f" "$work/tree/$f" >&2; then
      echo "generate-protos.sh --check: Sources/CProtobufC/${f#./} is out of date" >&2
      status=1
    fi
  done
  if [ $status -ne 0 ]; then
    echo "generate-protos.sh --check: generated code differs from Protos/; run Scripts/generate-protos.sh and commit the result" >&2
    exit 1
  fi
  echo "generate-protos.sh --check: Sources/CProtobufC is up to date with Protos/"
  exit 0
fi

mkdir -p "$h_dir"
# Remove stale generated files (from deleted .proto files) before copying the fresh ones.
find "$c_dir" -name '*.pb-c.[ch]' -delete
cp "$work/tree"/*.pb-c.c "$c_dir/"
cp "$work/tree/include"/*.pb-c.h "$h_dir/"
echo "generate-protos.sh: wrote $(cd "$work/tree" && find . -name '*.pb-c.[ch]' | sort | tr '\n' ' ')"
