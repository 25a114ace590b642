#!/usr/bin/env python3
"""Check a Switchyard binary against Hugging Face transformers, the way a new user would.

For every checkpoint folder written by transformers (Mixtral, Qwen3-MoE, Qwen2-MoE or OLMoE:
config.json, *.safetensors, tokenizer.json, ...) and every prompt, this script

  * runs transformers in float32 (bf16-stored weights are upcast on load), greedy, EOS ignored,
    for --max-tokens tokens, recording the prompt ids, completion ids, top-5 logprobs per step
    and the per-layer per-expert routing counts (prefill = prompt tokens; decode = the
    max_tokens - 1 tokens fed back in decode steps; a dense layer's row is empty);
  * runs `SWITCHYARD generate --model DIR --prompt TEXT --max-tokens N --temperature 0
    --ignore-eos --json --logprobs 5 --spawn-workers W` for each W in --workers (default 0,1,2,3);
  * compares: prompt_token_ids and completion_token_ids equal; top-5 logprobs (same ids,
    values within --logprob-tol, default 1e-3; two ids may swap ranks only if transformers
    itself has them within the tolerance); the chosen token's logprob; expert_load prefill and
    decode equal;
  * for each W in --serve-workers (default 2): starts `SWITCHYARD serve` with W worker processes,
    sends the same prompts to its HTTP API (POST /v1/completions, greedy, EOS ignored), and
    compares GET /v1/expert_load `tokens_per_expert` and `switchyard balance --json` with the sum of
    transformers' routing counts (prefill + decode) over the prompts;
  * prints a table and exits 1 on any mismatch (2 on usage/setup errors, 0 when all match).

Examples
  # fresh random checkpoints (other sizes/seeds than Tests/Fixtures), then check them
  check_against_transformers.py --switchyard .build/release/switchyard --make-models /tmp/sy-models
  # any existing checkpoint folder(s) of a supported architecture
  check_against_transformers.py --switchyard ./switchyard --model Tests/Fixtures/models/top2 \\
      --model ~/models/my-mixtral --prompt "Hello there" --max-tokens 12
  # transformers half only (no binary): print the reference
  check_against_transformers.py --model Tests/Fixtures/models/top1 --reference-only

Requires torch, transformers, tokenizers, safetensors (see Scripts/reference/requirements.txt;
Scripts/make-reference-fixtures.sh builds such a venv at .venv-reference). Nothing is
downloaded: folders are loaded with local_files_only.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

DEFAULT_PROMPTS = [
    "The quick brown fox jumps over the lazy dog",
    "Once upon a time, in a small village by the sea,",
    "Naïve café: 🚀 über 東京!",
]
TOP_N = 5
NEAR_TIE = 1e-4  # transformers' own greedy top-1/top-2 gap below this makes a token mismatch ambiguous
ROUTER_NEAR_TIE = 1e-5  # same for the router's k-th vs (k+1)-th expert probability

# Fresh random models for --make-models: deliberately other sizes/seeds than Tests/Fixtures. The
# Mixtral ones are built here; the others by model_fixtures.build_one (its byte-level tokenizers,
# chat templates and seed search), from the specs below.
MADE_MODELS = [
    dict(name="check_top2_bf16", seed=71001, stored="bfloat16", shard=None,
         config=dict(hidden_size=48, num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2,
                     num_attention_heads=4, num_key_value_heads=2, intermediate_size=80, vocab_size=336)),
    dict(name="check_sliding", seed=72001, stored="float32", shard=None,
         config=dict(hidden_size=40, num_hidden_layers=3, num_local_experts=5, num_experts_per_tok=2,
                     num_attention_heads=5, num_key_value_heads=1, intermediate_size=56, vocab_size=300,
                     sliding_window=4, rope_parameters={"rope_type": "default", "rope_theta": 50000.0})),
    dict(name="check_top1_sharded", seed=73001, stored="float32", shard="80KB",
         config=dict(hidden_size=24, num_hidden_layers=3, num_local_experts=3, num_experts_per_tok=1,
                     num_attention_heads=3, num_key_value_heads=3, intermediate_size=40, vocab_size=288)),
]
_CASES = [("The quick brown fox jumps over the lazy dog", 8), ("Naïve café: 🚀 über 東京!", 8)]
MADE_MODELS_OTHER = [
    dict(name="check_qwen3_moe_dense_bf16", arch="qwen3_moe", seed=74001, stored="bfloat16", shard=None,
         max_seed_tries=300, cases=_CASES,
         config=dict(hidden_size=40, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1, head_dim=12,
                     num_experts=12, num_experts_per_tok=3, moe_intermediate_size=20, intermediate_size=56,
                     mlp_only_layers=[2], decoder_sparse_step=1, norm_topk_prob=True, vocab_size=400,
                     rope_parameters={"rope_type": "default", "rope_theta": 20000.0})),
    dict(name="check_qwen2_moe_shared", arch="qwen2_moe", seed=75002, stored="float32", shard=None,
         max_seed_tries=300, cases=_CASES,
         config=dict(hidden_size=40, num_hidden_layers=3, num_attention_heads=5, num_key_value_heads=1,
                     num_experts=6, num_experts_per_tok=2, moe_intermediate_size=24, shared_expert_intermediate_size=48,
                     intermediate_size=48, decoder_sparse_step=2, norm_topk_prob=False, qkv_bias=True,
                     use_sliding_window=True, sliding_window=6, max_window_layers=3, vocab_size=384,
                     rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
    dict(name="check_olmoe_bf16", arch="olmoe", seed=76001, stored="bfloat16", shard=None,
         max_seed_tries=300, cases=_CASES,
         config=dict(hidden_size=40, num_hidden_layers=3, num_attention_heads=5, num_key_value_heads=5,
                     num_experts=10, num_experts_per_tok=3, intermediate_size=24, norm_topk_prob=True,
                     vocab_size=360, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def setup_error(msg: str):
    log(f"error: {msg}")
    sys.exit(2)


# --------------------------------------------------------------------------------------------
# transformers half
# --------------------------------------------------------------------------------------------

def load_reference_model(folder: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not os.path.isfile(os.path.join(folder, "config.json")):
        setup_error(f"{folder} has no config.json (not a transformers checkpoint folder)")
    try:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as e:  # noqa: BLE001
        setup_error(f"cannot load a tokenizer from {folder}: {e}")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    model.eval()
    return tok, model


def reference_run(tok, model, prompt: str, n: int) -> dict:
    """Greedy (EOS ignored) with the KV cache; raw f32 logits; expert load from router logits."""
    import torch

    cfg = model.config
    E, K, L = experts_of(cfg), cfg.num_experts_per_tok, cfg.num_hidden_layers
    moe_layers = moe_layers_of(cfg)
    prompt_ids = tok(prompt)["input_ids"]

    router_gap = [math.inf]

    def counts(router_logits, acc):
        # transformers returns router logits for the MoE layers only, in layer order.
        assert len(router_logits) == len(moe_layers), (len(router_logits), moe_layers)
        for li, lg in zip(moe_layers, router_logits):
            probs = torch.softmax(lg.reshape(-1, E).float(), dim=-1)
            if K < E:
                srt = torch.sort(probs, dim=-1, descending=True).values
                router_gap[0] = min(router_gap[0], float((srt[:, K - 1] - srt[:, K]).min()))
            idx = torch.topk(probs, K, dim=-1).indices.reshape(-1)
            for e, c in enumerate(torch.bincount(idx, minlength=E).tolist()):
                acc[li][e] += c

    prefill = empty_load(cfg)
    decode = empty_load(cfg)
    rows, completion = [], []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True, output_router_logits=True)
        counts(out.router_logits, prefill)
        for step in range(n):
            row = out.logits[0, -1].float()
            rows.append(row)
            completion.append(int(row.argmax()))
            if step == n - 1:
                break
            out = model(input_ids=torch.tensor([[completion[-1]]]), past_key_values=out.past_key_values,
                        use_cache=True, output_router_logits=True)
            counts(out.router_logits, decode)
    logprobs, gaps = [], []
    for row, chosen in zip(rows, completion):
        lp = torch.log_softmax(row.double(), dim=-1)
        top2 = torch.topk(row, 2).values
        gaps.append(float(top2[0] - top2[1]))
        order = sorted(range(lp.numel()), key=lambda j: (-float(lp[j]), j))[:TOP_N]
        logprobs.append({
            "token_id": chosen,
            "logprob": float(lp[chosen]),
            "top_logprobs": [{"token_id": j, "logprob": float(lp[j])} for j in order],
            "_full": lp,  # full distribution, for tie-aware comparison (not serialised)
        })
    return {
        "prompt_token_ids": prompt_ids,
        "completion_token_ids": completion,
        "text": tok.decode(completion, skip_special_tokens=True),
        "logprobs": logprobs,
        "expert_load": {"prefill": prefill, "decode": decode},
        "min_gap": min(gaps) if gaps else math.inf,
        "router_gap": router_gap[0],
    }


def experts_of(cfg) -> int:
    """Experts per MoE layer: Mixtral's num_local_experts, the others' num_experts."""
    return cfg.num_local_experts if cfg.model_type == "mixtral" else cfg.num_experts


def moe_layers_of(cfg) -> list[int]:
    """The MoE layers, by the rule model_fixtures.py records for each architecture."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import model_fixtures as mf
    return mf.moe_layer_indices(cfg)


def empty_load(cfg) -> list[list[int]]:
    """Zero routing counts per layer; a dense layer's row is empty (as Switchyard reports it)."""
    moe_layers = moe_layers_of(cfg)
    return [[0] * experts_of(cfg) if i in moe_layers else [] for i in range(cfg.num_hidden_layers)]


def public_reference(ref: dict) -> dict:
    """The reference in Switchyard's JSON shape (drops private fields)."""
    r = {k: v for k, v in ref.items() if k not in ("min_gap", "router_gap")}
    r["logprobs"] = [{k: v for k, v in lp.items() if k != "_full"} for lp in ref["logprobs"]]
    r["min_top1_top2_logit_gap"] = ref["min_gap"]
    r["min_router_topk_prob_gap"] = ref["router_gap"]
    return r


# --------------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------------

def compare(ref: dict, got: dict, n: int, tol: float) -> dict:
    """Returns {"prompt": str, "completion": str, "logprobs": str, "expert_load": str, "errors": [..]}."""
    errors: list[str] = []
    res = {}

    def first_diff(a, b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return i
        return min(len(a), len(b))

    gp = got.get("prompt_token_ids")
    if gp == ref["prompt_token_ids"]:
        res["prompt"] = f"ok ({len(gp)})"
    else:
        res["prompt"] = "MISMATCH"
        if not isinstance(gp, list):
            errors.append("prompt_token_ids missing")
        else:
            i = first_diff(gp, ref["prompt_token_ids"])
            errors.append(f"prompt_token_ids differ at {i}: switchyard {gp[i:i + 5]} vs transformers "
                          f"{ref['prompt_token_ids'][i:i + 5]} (len {len(gp)} vs {len(ref['prompt_token_ids'])})")

    gc = got.get("completion_token_ids")
    ref_c = ref["completion_token_ids"]
    if gc == ref_c:
        res["completion"] = f"ok ({len(gc)})"
    else:
        res["completion"] = "MISMATCH"
        if not isinstance(gc, list):
            errors.append("completion_token_ids missing")
        else:
            i = first_diff(gc, ref_c)
            note = ""
            if ref["min_gap"] < NEAR_TIE:
                note = f" (transformers has a near tie: min top-1/top-2 gap {ref['min_gap']:.2e})"
            errors.append(f"completion_token_ids differ at step {i}: switchyard {gc[i:i + 5]} vs "
                          f"transformers {ref_c[i:i + 5]} (len {len(gc)} vs {n}){note}")

    # logprobs: compare only the steps where both sides chose the same prefix of tokens
    glp = got.get("logprobs")
    if not isinstance(glp, list) or len(glp) != len(ref["logprobs"]):
        res["logprobs"] = "MISMATCH"
        errors.append(f"logprobs: expected {len(ref['logprobs'])} entries, got "
                      f"{len(glp) if isinstance(glp, list) else 'none'}")
    else:
        max_d, bad = 0.0, []
        valid = first_diff(gc, ref_c) if isinstance(gc, list) else 0
        for s, (r, g) in enumerate(zip(ref["logprobs"], glp)):
            if s >= valid:
                break  # diverged sequences: later steps are not comparable
            full = r["_full"]
            try:
                if int(g["token_id"]) != r["token_id"]:
                    bad.append(f"step {s}: token_id {g['token_id']} vs {r['token_id']}")
                if isinstance(gc, list) and s < len(gc) and int(g["token_id"]) != gc[s]:
                    bad.append(f"step {s}: logprobs token_id {g['token_id']} != completion_token_ids[{s}] {gc[s]}")
                d = abs(float(g["logprob"]) - r["logprob"])
                max_d = max(max_d, d)
                if not d <= tol:
                    bad.append(f"step {s}: chosen logprob {g['logprob']:.6f} vs {r['logprob']:.6f}")
                gt = g["top_logprobs"]
                if len(gt) != TOP_N:
                    bad.append(f"step {s}: {len(gt)} top_logprobs, expected {TOP_N}")
                seen = set()
                for rank, (re_, ge) in enumerate(zip(r["top_logprobs"], gt)):
                    gid, gval = int(ge["token_id"]), float(ge["logprob"])
                    if gid in seen or not 0 <= gid < full.numel():
                        bad.append(f"step {s} rank {rank}: bad/duplicate token_id {gid}")
                        continue
                    seen.add(gid)
                    ref_val = float(full[gid])
                    if gid != re_["token_id"] and abs(ref_val - re_["logprob"]) > tol:
                        bad.append(f"step {s} rank {rank}: id {gid} vs {re_['token_id']} "
                                   f"(transformers logprobs {ref_val:.6f} vs {re_['logprob']:.6f})")
                    d = abs(gval - ref_val)
                    max_d = max(max_d, d)
                    if not d <= tol:
                        bad.append(f"step {s} rank {rank}: id {gid} logprob {gval:.6f} vs {ref_val:.6f}")
                if any(float(a["logprob"]) < float(b["logprob"]) for a, b in zip(gt, gt[1:])):
                    bad.append(f"step {s}: top_logprobs not in descending order")
            except (KeyError, TypeError, ValueError) as e:
                bad.append(f"step {s}: malformed entry ({e!r})")
        if bad:
            res["logprobs"] = f"MISMATCH {max_d:.1e}"
            errors.extend("logprobs " + b for b in bad[:6])
            if len(bad) > 6:
                errors.append(f"... {len(bad) - 6} more logprob problems")
        else:
            res["logprobs"] = f"ok {max_d:.1e}" + ("" if valid == len(ref_c) else f" ({valid} steps)")

    gl = got.get("expert_load") or {}
    parts = []
    for phase in ("prefill", "decode"):
        if gl.get(phase) == ref["expert_load"][phase]:
            continue
        parts.append(phase)
        note = ""
        if ref["router_gap"] < ROUTER_NEAR_TIE:
            note = f" (transformers' router has a near tie: k-th/(k+1)-th prob gap {ref['router_gap']:.2e})"
        errors.append(f"expert_load.{phase}: switchyard {gl.get(phase)} vs transformers "
                      f"{ref['expert_load'][phase]}{note}")
    res["expert_load"] = "ok" if not parts else "MISMATCH " + "+".join(parts)
    res["errors"] = errors
    return res


# --------------------------------------------------------------------------------------------
# Switchyard half
# --------------------------------------------------------------------------------------------

def parse_json_output(stdout: str) -> dict:
    s = stdout.strip()
    try:
        obj = json.loads(s)
        if isinstance(obj, dict):
            return obj
    except json.JSONDecodeError:
        pass
    for line in reversed(s.splitlines()):  # tolerate log lines before the JSON object
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
                if isinstance(obj, dict):
                    return obj
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object on stdout")


def run_switchyard(binary: str, folder: str, prompt: str, n: int, workers: int, timeout: float, extra: list[str]):
    cmd = [binary, "generate", "--model", folder, "--prompt", prompt, "--max-tokens", str(n),
           "--temperature", "0", "--ignore-eos", "--json", "--logprobs", str(TOP_N),
           "--spawn-workers", str(workers), "--bf16-arithmetic", "exact"] + extra
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f}s: {shlex.join(cmd)}", time.time() - t0
    except OSError as e:
        return None, f"cannot run {binary}: {e}", time.time() - t0
    dt = time.time() - t0
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["(no stderr)"])[-3:]
        return None, f"exit {p.returncode}: {' | '.join(tail)}  [{shlex.join(cmd)}]", dt
    try:
        return parse_json_output(p.stdout), None, dt
    except ValueError as e:
        return None, f"{e}; stdout starts {p.stdout[:200]!r}", dt


def _wait_for_log(pattern: str, proc: subprocess.Popen, log_path: str, timeout: float) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            match = re.search(pattern, f.read())
        if match:
            return match.group(1)
        if proc.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                raise RuntimeError(f"{shlex.join(proc.args)} exited with {proc.returncode}: {f.read()[-1500:]}")
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {pattern!r} in {log_path}")


def _http(method: str, url: str, body: dict | None = None, timeout: float = 300) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def serve_expert_load(binary: str, folder: str, prompts: list[str], n: int, workers: int, timeout: float):
    """Runs the prompts through `serve` with `workers` worker processes; returns
    (tokens_per_expert from GET /v1/expert_load, the same from `balance --json`, error or None)."""
    work = tempfile.mkdtemp(prefix="switchyard-check-serve-")
    procs: list[subprocess.Popen] = []

    def start(args: list[str], name: str):
        log_path = os.path.join(work, name + ".log")
        handle = open(log_path, "w", encoding="utf-8")
        proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(proc)
        return proc, log_path

    try:
        serve, serve_log = start([binary, "serve", "--model", folder, "--bind", "tcp://127.0.0.1:0",
                                  "--workers", str(workers), "--http", "127.0.0.1:0",
                                  "--bf16-arithmetic", "exact", "--insecure"], "serve")
        base = _wait_for_log(r"HTTP API listening on (http://127\.0\.0\.1:\d+)", serve, serve_log, timeout)
        if workers > 0:
            endpoint = _wait_for_log(r"coordinator listening on (tcp://127\.0\.0\.1:\d+)", serve, serve_log, timeout)
            for i in range(workers):
                start([binary, "worker", "--coordinator", endpoint, "--model", folder, "--name", f"w{i}", "--insecure"], f"w{i}")
        deadline = time.time() + timeout
        while True:
            try:
                status, _ = _http("GET", base + "/health", timeout=5)
            except OSError:
                status = 0
            if status == 200:
                break
            if time.time() > deadline:
                return None, None, f"serve with {workers} workers never became healthy (see {work})"
            time.sleep(0.1)
        for prompt in prompts:
            status, text = _http("POST", base + "/v1/completions",
                                 {"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True}, timeout)
            if status != 200:
                return None, None, f"POST /v1/completions answered {status}: {text[:300]}"
        status, text = _http("GET", base + "/v1/expert_load", timeout=60)
        if status != 200:
            return None, None, f"GET /v1/expert_load answered {status}: {text[:300]}"
        endpoint_counts = json.loads(text).get("tokens_per_expert")
        p = subprocess.run([binary, "balance", "--server", base, "--json"], capture_output=True, text=True,
                           timeout=timeout)
        if p.returncode != 0:
            return endpoint_counts, None, f"switchyard balance --json failed: {p.stderr.strip()[-300:]}"
        return endpoint_counts, json.loads(p.stdout).get("tokens_per_expert"), None
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
        return None, None, f"{e}"
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------------------------
# --make-models
# --------------------------------------------------------------------------------------------

def make_models(root: str, prompts: list[str], n: int) -> list[str]:
    """Build fresh random checkpoints of every architecture with transformers (seeded; near ties avoided)."""
    import shutil
    import torch
    from transformers import MixtralForCausalLM

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import model_fixtures as mf  # the fixture generator: same tokenizer recipe and init tweaks

    os.makedirs(root, exist_ok=True)
    folders = []
    for spec in MADE_MODELS:
        folder = os.path.join(root, spec["name"])
        for attempt in range(20):
            seed = spec["seed"] + attempt
            if os.path.exists(folder):
                shutil.rmtree(folder)
            os.makedirs(folder)
            mf.save_model(mf.make_model(spec, seed), spec, folder)
            mf.build_tokenizer(spec["config"]["vocab_size"]).save_pretrained(folder)
            tok, model = load_reference_model(folder)
            refs = [reference_run(tok, model, p, n) for p in prompts]
            gap = min(r["min_gap"] for r in refs)
            rgap = min(r["router_gap"] for r in refs)
            if gap > mf.LOGIT_GAP_TARGET and rgap > mf.ROUTER_GAP_MIN:
                break
            log(f"  {spec['name']}: seed {seed} has a near tie (logit gap {gap:.2e}, router gap {rgap:.2e}); "
                f"trying the next seed")
        files = sorted(os.listdir(folder))
        log(f"made {folder} (seed {seed}, stored {spec['stored']}, min logit gap {gap:.3g}, "
            f"min router gap {rgap:.2g}): {' '.join(files)}")
        folders.append(folder)
        del model
    for spec in MADE_MODELS_OTHER:
        ref = mf.build_one(spec, root)  # also writes the folder's reference.json
        log(f"made {os.path.join(root, spec['name'])} ({spec['arch']}, seed {ref['seed']}, stored {spec['stored']}, "
            f"moe layers {ref['moe_layers']})")
        folders.append(os.path.join(root, spec["name"]))
    return folders


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def short(s: str, w: int) -> str:
    s = s.replace("\n", "\\n")
    return s if len(s) <= w else s[: w - 1] + "…"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--switchyard", metavar="PATH", help="Switchyard binary")
    ap.add_argument("--model", metavar="DIR", action="append", default=[],
                    help="checkpoint folder written by transformers, any supported architecture (repeatable)")
    ap.add_argument("--make-models", metavar="DIR",
                    help="first build fresh random checkpoints of every architecture (bf16-stored, sliding-window, sharded, "
                         "dense layers, shared expert) in DIR and check them too")
    ap.add_argument("--prompt", action="append", default=[], help="prompt text (repeatable)")
    ap.add_argument("--prompts-file", metavar="FILE", help="one prompt per line")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--workers", default="0,1,2,3", help="comma-separated --spawn-workers values (default %(default)s)")
    ap.add_argument("--serve-workers", default="2",
                    help="comma-separated worker counts for the `serve` + /v1/expert_load check; empty skips it "
                         "(default %(default)s)")
    ap.add_argument("--logprob-tol", type=float, default=1e-3)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per Switchyard run")
    ap.add_argument("--switchyard-arg", action="append", default=[], metavar="ARG",
                    help="extra argument appended to every Switchyard command (repeatable)")
    ap.add_argument("--reference-only", action="store_true", help="only run transformers and print the reference")
    ap.add_argument("--json-report", metavar="FILE", help="write all results (and references) as JSON here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default %(default)s)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every mismatch detail")
    args = ap.parse_args()

    if args.max_tokens < 1:
        ap.error("--max-tokens must be >= 1")
    try:
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
        serve_workers = [int(w) for w in args.serve_workers.split(",") if w.strip()]
    except ValueError:
        ap.error("--workers and --serve-workers must be comma-separated integers")
    if not args.reference_only:
        if not args.switchyard:
            ap.error("--switchyard PATH is required (or use --reference-only)")
        if not (os.path.isfile(args.switchyard) and os.access(args.switchyard, os.X_OK)):
            ap.error(f"--switchyard {args.switchyard}: not an executable file")
    prompts = list(args.prompt)
    if args.prompts_file:
        with open(args.prompts_file, encoding="utf-8") as f:
            prompts += [line.rstrip("\n") for line in f if line.strip()]
    if not prompts:
        prompts = list(DEFAULT_PROMPTS)
    if not args.model and not args.make_models:
        ap.error("give at least one --model DIR or --make-models DIR")

    import torch
    import transformers
    torch.set_num_threads(max(1, args.threads))
    log(f"transformers {transformers.__version__}, torch {torch.__version__}; "
        f"{len(prompts)} prompt(s), max_tokens {args.max_tokens}, workers {workers}")

    folders = [os.path.abspath(m) for m in args.model]
    if args.make_models:
        folders += make_models(os.path.abspath(args.make_models), prompts, args.max_tokens)

    rows, report, n_fail = [], [], 0
    serve_rows = []
    for folder in folders:
        tok, model = load_reference_model(folder)
        cfg = model.config
        log(f"{folder}: {cfg.model_type}, {cfg.num_hidden_layers} layers (MoE: {moe_layers_of(cfg)}), "
            f"{experts_of(cfg)} experts top-{cfg.num_experts_per_tok}, hidden {cfg.hidden_size}, vocab {cfg.vocab_size}, "
            f"sliding_window {getattr(cfg, 'sliding_window', None)}")
        routed = empty_load(cfg)
        for prompt in prompts:
            ref = reference_run(tok, model, prompt, args.max_tokens)
            for phase in ("prefill", "decode"):
                for li, counts in enumerate(ref["expert_load"][phase]):
                    for e, c in enumerate(counts):
                        routed[li][e] += c
            entry = {"model": folder, "prompt": prompt, "reference": public_reference(ref), "runs": []}
            report.append(entry)
            if args.reference_only:
                rows.append([os.path.basename(folder), short(prompt, 28), "-", f"{len(ref['prompt_token_ids'])}",
                             " ".join(map(str, ref["completion_token_ids"])), f"gap {ref['min_gap']:.2e}", "", "", ""])
                continue
            for w in workers:
                got, err, dt = run_switchyard(args.switchyard, folder, prompt, args.max_tokens, w,
                                              args.timeout, args.switchyard_arg)
                if got is None:
                    res = {"prompt": "-", "completion": "-", "logprobs": "-", "expert_load": "-",
                           "errors": [f"run failed: {err}"]}
                else:
                    res = compare(ref, got, args.max_tokens, args.logprob_tol)
                    if w > 0 and isinstance(got.get("workers"), list) and len(got["workers"]) != w:
                        res["errors"].append(f"note: asked for {w} workers, JSON lists {len(got['workers'])}")
                        res["errors_are_notes"] = True
                ok = not [e for e in res["errors"] if not e.startswith("note:")]
                n_fail += 0 if ok else 1
                status = "PASS" if ok else "FAIL"
                rows.append([os.path.basename(folder), short(prompt, 28), str(w), res["prompt"], res["completion"],
                             res["logprobs"], res["expert_load"], f"{dt:.1f}s", status])
                entry["runs"].append({"workers": w, "status": status, "seconds": dt, "errors": res["errors"],
                                      "switchyard": got})
                for e in res["errors"] if (not ok or args.verbose) else []:
                    log(f"  [{os.path.basename(folder)} | {short(prompt, 28)} | W={w}] {e}")
        for w in [] if args.reference_only else serve_workers:
            t0 = time.time()
            from_endpoint, from_balance, err = serve_expert_load(args.switchyard, folder, prompts, args.max_tokens, w,
                                                                 args.timeout)
            errors = [err] if err else []
            if not err and from_endpoint != routed:
                errors.append(f"/v1/expert_load tokens_per_expert {from_endpoint} vs transformers {routed}")
            if not err and from_balance != routed:
                errors.append(f"balance --json tokens_per_expert {from_balance} vs transformers {routed}")
            ok = not errors
            n_fail += 0 if ok else 1
            total = sum(map(sum, routed))
            serve_rows.append([os.path.basename(folder), f"{len(prompts)} prompts", str(w),
                               f"ok ({total} routed)" if ok else "MISMATCH",
                               "ok" if ok else "MISMATCH", f"{time.time() - t0:.1f}s", "PASS" if ok else "FAIL"])
            report.append({"model": folder, "serve_workers": w, "transformers_tokens_per_expert": routed,
                           "expert_load_endpoint": from_endpoint, "balance_json": from_balance, "errors": errors})
            for e in errors:
                log(f"  [{os.path.basename(folder)} | serve W={w}] {e}")
        del model

    head = ["model", "prompt", "W", "prompt ids", "completion", "top-5 logprobs (max |Δ|)", "expert load", "time", "status"]
    if args.reference_only:
        head = ["model", "prompt", "W", "prompt ids", "completion (transformers)", "min top1-top2", "", "", ""]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    print(fmt.format(*head))
    print(fmt.format(*["-" * w for w in widths]))
    for r in rows:
        print(fmt.format(*r))
    if serve_rows:
        head2 = ["model", "workload", "W", "GET /v1/expert_load", "balance --json", "time", "status"]
        widths2 = [max(len(str(r[i])) for r in serve_rows + [head2]) for i in range(len(head2))]
        fmt2 = "  ".join("{:<%d}" % w for w in widths2)
        print("\nserve: tokens_per_expert after all prompts vs transformers' router (prefill + decode)")
        print(fmt2.format(*head2))
        print(fmt2.format(*["-" * w for w in widths2]))
        for r in serve_rows:
            print(fmt2.format(*r))
    if args.json_report:
        with open(args.json_report, "w", encoding="utf-8") as f:
            json.dump(report, f, ensure_ascii=False, indent=1)
    if args.reference_only:
        print(f"\nreference only: {len(rows)} case(s)")
        return 0
    total = len(rows) + len(serve_rows)
    print(f"\n{total - n_fail}/{total} runs match transformers" + ("" if n_fail == 0 else f"; {n_fail} MISMATCH(ES)"))
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
