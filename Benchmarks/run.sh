#!/usr/bin/env bash
# The Switchyard benchmark suite: one command, one run, one table.
#
#   bash Benchmarks/run.sh
#
# In one run it measures (1) the machine's floors (memory read bandwidth, OpenBLAS sgemm at the expert
# shapes, ZeroMQ DEALER/ROUTER round trip), (2) Switchyard on a Mixtral-shaped bf16 benchmark model
# (hidden 1024, 12 layers, 8 experts top-2, FFN 2816, vocab 32000): prefill/decode at batch 1
# in-process and with 2 workers over loopback, and serve decode throughput at batch 8 and 32,
# (3) the peers a user would pick instead on the same checkpoint: Hugging Face transformers (CPU, bf16,
# torch threads 2) and llama.cpp through llama-cpp-python (GGUF bf16 and q8_0, 2 threads), then
# prints the figures and their ratios; (4) a Qwen3-MoE-shaped bf16 model (hidden 1024, 12 layers,
# 128 experts top-8, expert FFN 256: many small experts) at batch 1 in-process against llama.cpp bf16
# (interleaved rounds) and transformers; (5) a DeepSeek-V3-shaped bf16 model (latent attention, a shared
# expert, 64 routed experts top-6 in groups) against llama.cpp bf16 and transformers, with each engine's
# KV-cache bytes per token; (6) a gpt-oss-shaped model with MXFP4 experts against llama.cpp's MXFP4
# GGUF of the same weights; (7) 2 workers with the link encrypted (CURVE) against --insecure and
# in-process, in alternating rounds; (8) batch-1 decode of both models (bf16 and q8) beside the read floor
# and llama.cpp in every round of one process (switchyard-bench decode-floor). Peers that cannot be installed or run are skipped with the
# reason. Absolute times on a shared host drift; compare the ratios, which come from one run.
#
# Environment (all optional):
#   SWITCHYARD   the release binary (default: .build/release/switchyard, built if missing)
#   PEER_VENV    the venv for the Python peers (default: Benchmarks/.venv; created from PyPI if missing)
#   HF_PYTHON    a Python with torch + transformers to use instead of installing them into PEER_VENV
#   SWITCHYARD_KERNEL  a kernel path for Switchyard (system-info lists them); avx2 or avx2vnni hold every engine
#                to AVX2 + FMA (an AVX2 host's arithmetic on this one; see below); amx runs Switchyard's fast
#                products on AMX tiles (bits of their own) and the floors' peak is then tdpbf16ps's
#   BENCH_WORK   scratch directory (default: Benchmarks/.work; the model and GGUF files are kept there)
#   SKIP         comma-separated parts to skip: floors,hf,llama,serve,workers,qwen3moe,decodefloor,deepseek,gptoss,
#                delay,curve
#   DECODE_FLOOR_ROUNDS   rounds of each decode-floor configuration (default 9)
#   THREADS      threads of every engine: the peers and each Switchyard process (default 2)
#   DECODE_TOKENS, SERVE_TOKENS, SERVE_BATCHES   defaults 64, 64, 8,1,32,1,32,1,32 (batch 1 and 32
#                back to back three times: the batch-32 ÷ batch-1 ratio is the median of those pairs)
#   REPEATS      runs of each Switchyard batch-1 configuration, interleaved; the table shows medians (default 3)
#   CURVE_ROUNDS, CURVE_TOKENS   the CURVE section's rounds and tokens per request at batch 1 and 32 (defaults
#                5 and 256,64: at batch 1, 64 tokens are about 1.5 s and rounds of them spread by ±15%; in-process
#                batch 1 alone ran 47-61 tok/s from one round to the next on a shared host, hence 5 rounds)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/Benchmarks"
WORK=${BENCH_WORK:-$BENCH/.work}
RESULTS="$WORK/results"
# SWITCHYARD_KERNEL=avx2 (or avx2vnni) on an AVX-512 host: the run as an AVX2 host would see it, every engine
# held to AVX2 + FMA: Switchyard's kernels on that path, llama.cpp compiled for AVX2 + FMA without AVX-512
# (from source, in a venv of its own, Benchmarks/.venv-avx2 unless PEER_VENV is set), torch at ATen's AVX2
# capability, the floors' peak f32 FMA on ymm registers (floors.c reads SWITCHYARD_KERNEL; its read passes
# stay compiled for this CPU) and OpenBLAS on its Haswell kernels. The memory system stays this host's: it
# is the arithmetic and the kernels of an AVX2 host, not its memory.
LLAMA_CMAKE_ARGS=
LLAMA_REJECT=
case "${SWITCHYARD_KERNEL:-}" in
avx2 | avx2vnni)
    PEER_VENV=${PEER_VENV:-$BENCH/.venv-avx2}
    export ATEN_CPU_CAPABILITY=avx2 OPENBLAS_CORETYPE=Haswell
    vnni=OFF
    if [[ "$SWITCHYARD_KERNEL" == avx2vnni ]]; then vnni=ON; fi
    LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
    LLAMA_CMAKE_ARGS+=" -DGGML_AVX_VNNI=$vnni -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF"
    LLAMA_CMAKE_ARGS+=" -DGGML_AVX512_BF16=OFF"
    LLAMA_REJECT='AVX512 = 1'
    ;;
*)
    # On a CPU with AMX, llama.cpp without its AMX kernels: the native build's AMX q8_0 product died with
    # SIGILL on an Intel Xeon here (`tilezero` on a thread that had not asked the kernel for the AMX tile
    # state; llama.cpp asks on its main thread only, ggml-org/llama.cpp pull request 26954), so the peer is
    # built for this CPU's AVX-512 features and AVX-VNNI with AMX off (GGML_NATIVE would turn it on).
    if grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
        LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
        for feature in avx_vnni:AVX_VNNI avx512f:AVX512 avx512_vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI \
            avx512_bf16:AVX512_BF16; do
            if grep -qw "${feature%%:*}" /proc/cpuinfo; then state=ON; else state=OFF; fi
            LLAMA_CMAKE_ARGS+=" -DGGML_${feature#*:}=$state"
        done
        LLAMA_CMAKE_ARGS+=" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
        LLAMA_REJECT='AMX_INT8 = 1'
    fi
    ;;
esac
PEER_VENV=${PEER_VENV:-$BENCH/.venv}
THREADS=${THREADS:-2}
SKIP=${SKIP:-}
MODEL="$WORK/model"
PROMPT_TOKENS=128
DECODE_TOKENS=${DECODE_TOKENS:-64}
REPEATS=${REPEATS:-3}
SERVE_TOKENS=${SERVE_TOKENS:-64}
SERVE_BATCHES=${SERVE_BATCHES:-8,1,32,1,32,1,32}
mkdir -p "$WORK" "$RESULTS"
rm -f "$RESULTS"/*.json "$RESULTS"/*.skip

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
skip() { log "SKIPPED $1: $2"; printf '%s\n' "$2" > "$RESULTS/$1.skip"; }
skipping() { [[ ",$SKIP," == *",$1,"* ]]; }

# --- the switchyard binary ---------------------------------------------------------------------
SWITCHYARD=${SWITCHYARD:-$ROOT/.build/release/switchyard}
if [[ ! -x "$SWITCHYARD" ]]; then
    log "building $SWITCHYARD (swift build -c release --product switchyard)"
    (cd "$ROOT" && swift build -c release --product switchyard) >&2 || { log "build failed"; exit 1; }
fi

# What the kernels run on (the CPU, its vector features, the kernel path; SWITCHYARD_KERNEL forces one).
"$SWITCHYARD" system-info --json > "$RESULTS/system.json" || skip system "switchyard system-info failed"

# --- the peer venv (first time: llama-cpp-python compiles llama.cpp for several minutes; done before
# any measurement so that the compile does not share the cores with the figures) ---
setup_peers() {
    if [[ ! -x "$PEER_VENV/bin/python" ]]; then
        python3 -m venv "$PEER_VENV" || return 1
    fi
    local pip="$PEER_VENV/bin/pip"
    "$PEER_VENV/bin/python" -c "import numpy, safetensors, yaml, tqdm" 2>/dev/null \
        || "$pip" install -q numpy safetensors pyyaml tqdm sentencepiece || echo "numpy etc. failed"
    if [[ -z "${HF_PYTHON:-}" ]] && ! "$PEER_VENV/bin/python" -c "import torch, transformers" 2>/dev/null; then
        "$pip" install -q torch transformers || echo "torch/transformers install failed"
    fi
    if [[ -n "$LLAMA_CMAKE_ARGS" ]]; then
        # Built from source with these flags (a cached wheel would be the native build); again if the venv
        # holds a build with what these flags leave out (AVX-512 for the AVX2 build, AMX for the other).
        if ! "$PEER_VENV/bin/python" -c "import llama_cpp, sys; sys.exit(b'$LLAMA_REJECT' in llama_cpp.llama_print_system_info())" 2>/dev/null; then
            CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=2 "$pip" install -q --no-cache-dir --force-reinstall \
                --no-binary llama-cpp-python llama-cpp-python || echo "llama-cpp-python ($LLAMA_CMAKE_ARGS) install failed"
        fi
    elif ! "$PEER_VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
        CMAKE_BUILD_PARALLEL_LEVEL=2 "$pip" install -q llama-cpp-python || echo "llama-cpp-python install failed"
    fi
}
SETUP_LOG="$WORK/peer-setup.log"
if skipping hf && skipping llama; then :; else
    log "setting up the peer venv $PEER_VENV (log: $SETUP_LOG)"
    setup_peers > "$SETUP_LOG" 2>&1
    grep -E "failed" "$SETUP_LOG" >&2 || true
fi
HF_PYTHON=${HF_PYTHON:-$PEER_VENV/bin/python}

# A benchmark model, made again only when its make-model arguments changed (kept in BENCH_WORK).
make_model() {  # directory, what it is (for the log), make-model arguments...
    local dir=$1 label=$2
    shift 2
    if [[ ! -f "$dir/.made" ]] || [[ "$(cat "$dir/.made")" != "$*" ]]; then
        log "making the $label: switchyard make-model $*"
        rm -rf "$dir"
        "$SWITCHYARD" make-model --out "$dir" "$@" >&2 || { log "make-model failed"; exit 1; }
        printf '%s' "$*" > "$dir/.made"
    fi
}

# transformers on a benchmark model (once: it is the slowest engine by far), into RESULTS/NAME.json.
run_hf() {  # result name, model directory, what it is (for the log)
    local name=$1 model=$2 label=$3
    if skipping hf; then skip "$name" "SKIP=hf"
    elif ! "$HF_PYTHON" -c "import torch, transformers" 2>/dev/null; then
        skip "$name" "torch/transformers not importable by $HF_PYTHON (install failed: see $SETUP_LOG)"
    else
        log "transformers on the $label: prefill $PROMPT_TOKENS, decode $DECODE_TOKENS, bf16, $THREADS threads"
        "$HF_PYTHON" "$BENCH/peers/hf_peer.py" --model "$model" --prompt-ids "$PROMPT_IDS" --decode "$DECODE_TOKENS" \
            --threads "$THREADS" > "$RESULTS/$name.json" 2> "$WORK/$name.log" \
            || { skip "$name" "hf_peer.py failed: $(tail -2 "$WORK/$name.log")"; rm -f "$RESULTS/$name.json"; }
    fi
}

# --- the benchmark model ------------------------------------------------------------------------
MODEL_ARGS=(--arch mixtral --hidden 1024 --layers 12 --experts 8 --top-k 2 --vocab 32000 --intermediate 2816
            --heads 16 --kv-heads 8 --dtype bf16 --seed 1)
make_model "$MODEL" "benchmark model" "${MODEL_ARGS[@]}"
# A fixed 128-token prompt of ordinary ids (the same for every engine).
PROMPT_IDS=$(python3 -c "print(','.join(str(500 + (i * 7919) % 20000) for i in range($PROMPT_TOKENS)))")

# --- floors -------------------------------------------------------------------------------------
if skipping floors; then skip floors "SKIP=floors"; else
    log "floors: compiling Benchmarks/floors/floors.c"
    if cc -O3 -march=native -o "$WORK/floors" "$BENCH/floors/floors.c" -lopenblas -lzmq -lpthread >&2; then
        log "floors: measuring"
        "$WORK/floors" > "$RESULTS/floors.json" || skip floors "floors program failed"
    else
        skip floors "floors.c did not compile (needs libopenblas-dev, libzmq3-dev)"
    fi
fi

# --- llama.cpp GGUF files (converted once; kept in BENCH_WORK) -----------------------------------
LLAMA_READY=
if skipping llama; then skip llama-bf16 "SKIP=llama"
elif ! "$PEER_VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
    skip llama-bf16 "llama-cpp-python did not install (see $SETUP_LOG)"; skip llama-q8_0 "llama-cpp-python did not install"
else
    bash "$BENCH/peers/make_gguf.sh" "$PEER_VENV" "$HF_PYTHON" "$MODEL" "$WORK" "$WORK/gguf" 2> "$WORK/gguf.log" >&2
    LLAMA_READY=1
fi
run_llama() {  # type (bf16 or q8_0), run suffix (".runN" or ""), [GGUF directory, result-name prefix]
    local type=$1 suffix=$2 dir=${3:-$WORK/gguf} prefix=${4:-}
    local gguf="$dir/model-$type.gguf" name="${prefix}llama-$type"
    if [[ ! -f "$gguf" ]]; then
        skip "$name" "GGUF $type conversion failed: $(grep -E "Error|error" "$dir.log" | tail -2)"
        return
    fi
    log "llama.cpp $type ($gguf): prefill $PROMPT_TOKENS, decode $DECODE_TOKENS, $THREADS threads"
    "$PEER_VENV/bin/python" "$BENCH/peers/llama_peer.py" --gguf "$gguf" --prompt-ids "$PROMPT_IDS" \
        --decode "$DECODE_TOKENS" --threads "$THREADS" > "$RESULTS/$name$suffix.json" 2> "$WORK/$name.log" \
        || { skip "$name" "llama_peer.py failed: $(tail -2 "$WORK/$name.log")"; rm -f "$RESULTS/$name$suffix.json"; }
}

# --- Switchyard and llama.cpp bf16, batch 1 -----------------------------------------------------
# The checkpoint read once, so that no engine's first run pays for the disk.
cat "$MODEL"/*.safetensors > /dev/null
run_generate() {  # name, run, spawn-workers, extra arguments... (GEN_MODEL: another model directory)
    local name=$1 run=$2 workers=$3
    shift 3
    log "switchyard generate --spawn-workers $workers $* (prefill $PROMPT_TOKENS, decode $DECODE_TOKENS; run $run of $REPEATS)"
    "$SWITCHYARD" generate --model "${GEN_MODEL:-$MODEL}" --spawn-workers "$workers" --json --prompt-token-ids "$PROMPT_IDS" \
        --max-tokens "$DECODE_TOKENS" --ignore-eos --temperature 0 --log-level warning "$@" \
        > "$RESULTS/$name.run$run.json" 2> "$WORK/$name.log" || { skip "$name" "generate failed: $(tail -3 "$WORK/$name.log")"; rm -f "$RESULTS/$name.run$run.json"; }
}
# Each configuration REPEATS times, the configurations interleaved (so that a slow spell of the shared
# host falls on all of them), then the median of each figure; llama.cpp bf16 runs in every round too,
# and the ratios to it are medians of the rounds' ratios. Each worker gets THREADS too (measured:
# better than THREADS ÷ workers here, since a token's two experts are often on one worker while the
# other waits).
# llama.cpp bf16 runs right after the in-process run it is compared with, 2 workers right after it too.
# The read bandwidth is measured at the start and at the end of every round (`floors --bandwidth`): the
# decode ÷ floor ratios divide each round's decodes by the better of its round's two figures, since
# this host's bandwidth has been seen to change from one minute to the next.
floors_ready() { [[ -x "$WORK/floors" ]] && ! skipping floors; }
round_bandwidth() {  # result name
    if floors_ready; then
        "$WORK/floors" --bandwidth > "$RESULTS/$1.json" 2> /dev/null || rm -f "$RESULTS/$1.json"
    fi
}
for run in $(seq "$REPEATS"); do
    round_bandwidth "bandwidth-start.run$run"
    if [[ -n "$LLAMA_READY" ]]; then run_llama bf16 ".run$run"; fi
    run_generate switchyard-inprocess "$run" 0 --threads "$THREADS"
    if skipping workers; then :; else run_generate switchyard-workers2 "$run" 2 --threads "$THREADS"; fi
    run_generate switchyard-inprocess-q8 "$run" 0 --threads "$THREADS" --quantize q8
    if [[ -n "$LLAMA_READY" ]]; then run_llama q8_0 ".run$run"; fi
    round_bandwidth "bandwidth-end.run$run"
done
if skipping workers; then skip switchyard-workers2 "SKIP=workers"; fi

# --- a Qwen3-MoE-shaped model: many small experts, batch 1 ---------------------------------------
QWEN_MODEL="$WORK/model-qwen3moe"
QWEN_ARGS=(--arch qwen3_moe --hidden 1024 --layers 12 --experts 128 --top-k 8 --moe-intermediate 256 --vocab 32000
           --heads 16 --kv-heads 4 --norm-topk-prob --dtype bf16 --seed 2)
if skipping qwen3moe; then skip qwen3moe-switchyard-inprocess "SKIP=qwen3moe"; else
    make_model "$QWEN_MODEL" "Qwen3-MoE-shaped model" "${QWEN_ARGS[@]}"
    QWEN_LLAMA=
    if [[ -n "$LLAMA_READY" ]]; then
        bash "$BENCH/peers/make_gguf.sh" "$PEER_VENV" "$HF_PYTHON" "$QWEN_MODEL" "$WORK" "$WORK/gguf-qwen3moe" \
            2> "$WORK/gguf-qwen3moe.log" >&2
        QWEN_LLAMA=1
    else
        skip qwen3moe-llama-bf16 "$(cat "$RESULTS/llama-bf16.skip" 2>/dev/null || echo "llama.cpp not set up")"
    fi
    cat "$QWEN_MODEL"/*.safetensors > /dev/null
    for run in $(seq "$REPEATS"); do
        round_bandwidth "qwen3moe-bandwidth-start.run$run"
        if [[ -n "$QWEN_LLAMA" ]]; then run_llama bf16 ".run$run" "$WORK/gguf-qwen3moe" qwen3moe-; fi
        GEN_MODEL="$QWEN_MODEL" run_generate qwen3moe-switchyard-inprocess "$run" 0 --threads "$THREADS"
        GEN_MODEL="$QWEN_MODEL" run_generate qwen3moe-switchyard-inprocess-q8 "$run" 0 --threads "$THREADS" --quantize q8
        if [[ -n "$QWEN_LLAMA" ]]; then run_llama q8_0 ".run$run" "$WORK/gguf-qwen3moe" qwen3moe-; fi
        round_bandwidth "qwen3moe-bandwidth-end.run$run"
    done
    run_hf qwen3moe-transformers "$QWEN_MODEL" "Qwen3-MoE-shaped model"
fi

# --- batch-1 decode beside the read floor and llama.cpp, round by round (switchyard-bench decode-floor) ---
# One process holds the model and llama.cpp's (llama_peer.py --rounds-from-stdin) and alternates read passes
# of the floor, Switchyard's decode and llama.cpp's in every round, so that every ratio compares figures taken
# within about two seconds of each other (the rounds above are a minute apart; this host's bandwidth swings by
# half within seconds). Needs the Benchmarks package built (swift build -c release in Benchmarks/).
if skipping decodefloor; then skip decode-floor "SKIP=decodefloor"; else
    BENCH_BIN="$BENCH/.build/release/switchyard-bench"
    log "building switchyard-bench (swift build -c release in Benchmarks/)"
    if (cd "$BENCH" && swift build -c release) > "$WORK/bench-build.log" 2>&1; then
        for spec in "model|none|gguf/model-bf16.gguf" "model|q8|gguf/model-q8_0.gguf" \
                    "model-qwen3moe|none|gguf-qwen3moe/model-bf16.gguf" "model-qwen3moe|q8|gguf-qwen3moe/model-q8_0.gguf"; do
            IFS='|' read -r dir quantize gguf <<< "$spec"
            name="decode-floor-$dir-$quantize"
            if [[ ! -d "$WORK/$dir" ]]; then skip "$name" "$WORK/$dir was not made (SKIP?)"; continue; fi
            peer=()
            if [[ -n "$LLAMA_READY" && -f "$WORK/$gguf" ]]; then peer=(--gguf "$WORK/$gguf" --python "$PEER_VENV/bin/python"); fi
            log "switchyard-bench decode-floor --model $dir --quantize $quantize ${peer[*]:+(with llama.cpp)}: ${DECODE_FLOOR_ROUNDS:-9} rounds"
            "$BENCH_BIN" decode-floor --model "$WORK/$dir" --quantize "$quantize" --rounds "${DECODE_FLOOR_ROUNDS:-9}" \
                --tokens "$DECODE_TOKENS" --prompt-tokens "$PROMPT_TOKENS" --threads "$THREADS" "${peer[@]}" \
                > "$RESULTS/$name.json" 2> "$WORK/$name.log" \
                || { skip "$name" "decode-floor failed: $(tail -2 "$WORK/$name.log")"; rm -f "$RESULTS/$name.json"; }
        done
    else
        skip decode-floor "switchyard-bench did not build (see $WORK/bench-build.log)"
    fi
fi

# --- a DeepSeek-V3-shaped model: latent attention (MLA) with its compressed cache, a shared expert, 64 routed
# experts top-6 in 16 groups (8 kept) with the sigmoid router, the first layer dense; batch 1 against llama.cpp
# bf16 and transformers, with each engine's KV-cache bytes per token. Groups of 4 experts: with 8 or 16 experts
# a group, llama.cpp (llama-cpp-python 0.3.36) computes this checkpoint's logits 15% (relative RMS) away from
# transformers float32, against 0.6% with groups of 4 or no groups (measured on 3-layer models of this shape;
# Switchyard matches transformers in every case).
DEEPSEEK_MODEL="$WORK/model-deepseek"
DEEPSEEK_ARGS=(--arch deepseek_v3 --hidden 1024 --layers 12 --experts 64 --top-k 6 --moe-intermediate 512
               --shared-experts 1 --groups 16 --top-groups 8 --dense-layers 0 --intermediate 2816 --norm-topk-prob
               --routed-scale 2.5 --q-lora-rank 384 --kv-lora-rank 256 --qk-nope-dim 64 --qk-rope-dim 32 --v-head-dim 64
               --heads 16 --vocab 32000 --no-attention-bias --dtype bf16 --seed 4)
if skipping deepseek; then skip deepseek-switchyard-inprocess "SKIP=deepseek"; else
    make_model "$DEEPSEEK_MODEL" "DeepSeek-shaped model" "${DEEPSEEK_ARGS[@]}"
    # The same shape with its linear weights in FP8 as DeepSeek-V3 ships them (e4m3fn, 128 × 128 block scales).
    make_model "$DEEPSEEK_MODEL-fp8" "DeepSeek-shaped model in FP8" "${DEEPSEEK_ARGS[@]}" --fp8
    DEEPSEEK_LLAMA=
    if [[ -n "$LLAMA_READY" ]]; then
        TYPES=bf16 bash "$BENCH/peers/make_gguf.sh" "$PEER_VENV" "$HF_PYTHON" "$DEEPSEEK_MODEL" "$WORK" "$WORK/gguf-deepseek" \
            2> "$WORK/gguf-deepseek.log" >&2
        DEEPSEEK_LLAMA=1
    else
        skip deepseek-llama-bf16 "$(cat "$RESULTS/llama-bf16.skip" 2>/dev/null || echo "llama.cpp not set up")"
    fi
    cat "$DEEPSEEK_MODEL"/*.safetensors "$DEEPSEEK_MODEL-fp8"/*.safetensors > /dev/null
    for run in $(seq "$REPEATS"); do
        if [[ -n "$DEEPSEEK_LLAMA" ]]; then run_llama bf16 ".run$run" "$WORK/gguf-deepseek" deepseek-; fi
        GEN_MODEL="$DEEPSEEK_MODEL" run_generate deepseek-switchyard-inprocess "$run" 0 --threads "$THREADS"
        GEN_MODEL="$DEEPSEEK_MODEL-fp8" run_generate deepseek-fp8-switchyard-inprocess "$run" 0 --threads "$THREADS"
    done
    run_hf deepseek-transformers "$DEEPSEEK_MODEL" "DeepSeek-shaped model"
fi

# --- a gpt-oss-shaped model with MXFP4 experts, batch 1, against llama.cpp's MXFP4 GGUF of the same weights ---
# (hidden 1024, 12 layers, 32 experts top-4, expert FFN 1024, attention sinks, sliding window on even layers;
# experts stored as the released checkpoints store them: e2m1 blocks and e8m0 scales; the rest bf16).
# llama.cpp's converter keeps MXFP4 experts as its MXFP4 type whatever --outtype (here bf16 for the rest).
GPTOSS_MODEL="$WORK/model-gptoss"
GPTOSS_ARGS=(--arch gpt_oss --hidden 1024 --layers 12 --experts 32 --top-k 4 --intermediate 1024 --vocab 32000
             --heads 16 --kv-heads 8 --mxfp4 --dtype bf16 --seed 3)
if skipping gptoss; then skip gptoss-switchyard-inprocess "SKIP=gptoss"; else
    make_model "$GPTOSS_MODEL" "gpt-oss-shaped model" "${GPTOSS_ARGS[@]}"
    GPTOSS_LLAMA=
    if [[ -n "$LLAMA_READY" ]]; then
        TYPES=bf16 bash "$BENCH/peers/make_gguf.sh" "$PEER_VENV" "$HF_PYTHON" "$GPTOSS_MODEL" "$WORK" "$WORK/gguf-gptoss" \
            2> "$WORK/gguf-gptoss.log" >&2
        if [[ -f "$WORK/gguf-gptoss/model-bf16.gguf" ]]; then
            # Named for what its experts hold: the converter keeps MXFP4 blocks as GGML_TYPE_MXFP4.
            ln -sf model-bf16.gguf "$WORK/gguf-gptoss/model-mxfp4.gguf"
            GPTOSS_LLAMA=1
        fi
    fi
    [[ -n "$GPTOSS_LLAMA" ]] || skip gptoss-llama-mxfp4 "$(grep -E "Error|error" "$WORK/gguf-gptoss.log" 2>/dev/null | tail -2 || echo "llama.cpp not set up")"
    cat "$GPTOSS_MODEL"/*.safetensors > /dev/null
    for run in $(seq "$REPEATS"); do
        if [[ -n "$GPTOSS_LLAMA" ]]; then run_llama mxfp4 ".run$run" "$WORK/gguf-gptoss" gptoss-; fi
        GEN_MODEL="$GPTOSS_MODEL" run_generate gptoss-switchyard-inprocess "$run" 0 --threads "$THREADS"
    done
fi

python3 - "$RESULTS" <<'PY'
import glob, json, os, statistics, sys
results = sys.argv[1]
for name in ["switchyard-inprocess", "switchyard-workers2", "switchyard-inprocess-q8", "llama-bf16", "llama-q8_0",
             "qwen3moe-switchyard-inprocess", "qwen3moe-switchyard-inprocess-q8", "qwen3moe-llama-bf16",
             "qwen3moe-llama-q8_0", "gptoss-switchyard-inprocess", "gptoss-llama-mxfp4",
             "deepseek-switchyard-inprocess", "deepseek-fp8-switchyard-inprocess", "deepseek-llama-bf16"]:
    paths = glob.glob(os.path.join(results, name + ".run*.json"))
    # In round order (run10 after run9), so that round i of every configuration pairs with round i of the others.
    paths.sort(key=lambda path: int(path.rsplit(".run", 1)[1].split(".")[0]))
    runs = [json.load(open(path)) for path in paths]
    rounds = [int(path.rsplit(".run", 1)[1].split(".")[0]) for path in paths]
    if not runs:
        continue
    merged = dict(runs[0])
    timings = [run.get("timing", run) for run in runs]
    keys = ["prefill_tokens_per_s", "decode_tokens_per_s"]
    merged["timing"] = {**timings[0], **{key: statistics.median(t[key] for t in timings) for key in keys}}
    merged["timing_runs"] = [{**{key: t[key] for key in keys}, "round": n} for t, n in zip(timings, rounds)]
    json.dump(merged, open(os.path.join(results, name + ".json"), "w"))
PY

# --- Switchyard serve, batch 8 and 32 -----------------------------------------------------------
# The bandwidth and the dot peak are measured again right before every batch (serve_decode.py --floors,
# `floors --peak`): each batch-1 → batch-32 pair is held against the ceiling of its own minutes, and the
# table's ceiling takes the best peak of these and the floors above, as a second CPU taken away for a
# moment once halved the start's peak.
if skipping serve; then skip serve-workers0 "SKIP=serve"; skip serve-workers2 "SKIP=serve"; else
    SERVE_FLOORS=()
    if floors_ready; then SERVE_FLOORS=(--floors "$WORK/floors"); fi
    for workers in 0 2; do
        if [[ $workers == 2 ]] && skipping workers; then skip serve-workers2 "SKIP=workers"; continue; fi
        log "switchyard serve --workers $workers: decode at batches $SERVE_BATCHES"
        python3 "$BENCH/serve_decode.py" --switchyard "$SWITCHYARD" --model "$MODEL" --workers "$workers" \
            --batches "$SERVE_BATCHES" --max-tokens "$SERVE_TOKENS" --threads "$THREADS" "${SERVE_FLOORS[@]}" \
            > "$RESULTS/serve-workers$workers.json" \
            || { skip "serve-workers$workers" "serve_decode.py failed"; rm -f "$RESULTS/serve-workers$workers.json"; }
    done
fi

# --- a slow link: the 2 workers reach serve through Benchmarks/delay_proxy.py (this kernel has no netem) ---
# 0.2 ms and 1 ms each way; at 1 ms also with --micro-batches 2 (one half's attention overlapped with the
# other half's experts on the wire). Batches 1, 8 and 32, 32 tokens each.
if skipping serve || skipping workers || skipping delay; then skip serve-link "SKIP=serve, workers or delay"; else
    for spec in "0.2|serve-link0.2|" "1|serve-link1|" "1|serve-link1-micro2|--micro-batches 2"; do
        IFS='|' read -r delay name extra <<< "$spec"
        log "switchyard serve --workers 2 $extra through a link delayed $delay ms each way: batches 1,8,32"
        python3 "$BENCH/serve_decode.py" --switchyard "$SWITCHYARD" --model "$MODEL" --workers 2 --link-delay-ms "$delay" \
            --batches 1,8,32 --max-tokens 32 --threads "$THREADS" --serve-args "$extra" > "$RESULTS/$name.json" \
            2> "$WORK/$name.log" || { skip "$name" "serve_decode.py failed: $(tail -2 "$WORK/$name.log")"; rm -f "$RESULTS/$name.json"; }
    done
fi

# --- CURVE on the worker link against --insecure and against in-process: batch 1 and 32, prefill and decode ---
# CURVE_ROUNDS rounds (default 5), the three configurations alternating within each, so that load on the machine
# falls on all alike, and in the reverse order every other round, so that a machine speeding up or slowing down
# through the section favours none; the table gives the medians of the rounds' ratios.
if skipping serve || skipping workers || skipping curve; then skip serve-curve "SKIP=serve, workers or curve"; else
    for round in $(seq "${CURVE_ROUNDS:-5}"); do
        order=(inprocess insecure curve)
        if (( round % 2 == 0 )); then order=(curve insecure inprocess); fi
        for link in "${order[@]}"; do
            name="serve-curve-$link.run$round"
            if [[ $link == inprocess ]]; then set -- --workers 0; else set -- --workers 2 --link "$link"; fi
            log "switchyard serve $* (round $round of ${CURVE_ROUNDS:-5}): batches 1,32 (${CURVE_TOKENS:-256,64} tokens), prompt $PROMPT_TOKENS tokens"
            python3 "$BENCH/serve_decode.py" --switchyard "$SWITCHYARD" --model "$MODEL" "$@" \
                --batches 1,32 --prompt-tokens "$PROMPT_TOKENS" --max-tokens "${CURVE_TOKENS:-256,64}" --threads "$THREADS" \
                > "$RESULTS/$name.json" 2> "$WORK/$name.log" \
                || { skip "serve-curve" "serve_decode.py $* failed: $(tail -2 "$WORK/$name.log")"; rm -f "$RESULTS/$name.json"; }
        done
    done
    set --
fi

# --- peers --------------------------------------------------------------------------------------
run_hf transformers "$MODEL" "benchmark model"

if skipping llama; then skip llama-q8_0 "SKIP=llama"; fi

python3 "$BENCH/report.py" --results "$RESULTS" --model "$MODEL" --qwen3moe-model "$QWEN_MODEL" --gptoss-model "$GPTOSS_MODEL" --deepseek-model "$DEEPSEEK_MODEL" --prompt-tokens "$PROMPT_TOKENS" --decode-tokens "$DECODE_TOKENS"
