#!/usr/bin/env python3
"""Write Switchyard's model reference fixtures from Hugging Face transformers.

Contract: spec/model-fixtures.md. For every tiny Mixtral checkpoint below this script

  1. builds a SentencePiece/Mixtral-style byte-fallback BPE tokenizer with the `tokenizers`
     library (merges trained on an inline corpus up to the model's vocab size) and saves it
     with transformers' save_pretrained;
  2. builds a MixtralForCausalLM with a fixed torch seed and saves it with save_pretrained
     (float32, bfloat16 or sharded);
  3. RELOADS the saved folder with from_pretrained(dtype=torch.float32) and computes, per case,
     greedy completion ids, raw f32 step logits, top-5 logprobs and per-expert routing counts;
  4. cross-checks its own KV-cache greedy loop against model.generate() and against a plain
     no-cache full forward, and asserts every greedy step has a top-1/top-2 logit gap > 1e-3
     (and that the router's k-th/(k+1)-th expert choice is not a near tie). If a seed gives a
     near tie, the next seed is tried (deterministically) and the used seed is recorded.

Usage: model_fixtures.py [--out Tests/Fixtures] [--only name,name]
Everything is built locally; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
import tokenizers  # noqa: E402
from tokenizers import Tokenizer, AddedToken, decoders, pre_tokenizers, processors  # noqa: E402
from tokenizers.models import BPE  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    MixtralConfig,
    MixtralForCausalLM,
    PreTrainedTokenizerFast,
)

LOGIT_GAP_MIN = 1e-3          # hard floor: greedy top-1 minus top-2 logit, every step (asserted)
LOGIT_GAP_TARGET = 1e-2       # seeds are searched (deterministically) until every step clears this
ROUTER_GAP_MIN = 1e-4         # router softmax prob: k-th minus (k+1)-th expert, every routed token
CROSS_CHECK_ATOL = 1e-4       # cached loop vs generate vs no-cache forward, logits
MAX_SEED_TRIES = 20
FINAL_NORM_SCALE = 3.0
TOP_LOGPROBS = 5
SPM = "\u2581"  # ▁

# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

CORPUS = """
The quick brown fox jumps over the lazy dog. Once upon a time, in a small village by the sea,
there lived an old fisherman and his wife. Every morning he went out to the water, and every
evening he came home with a basket of fish. The weather was often cold, but the people were kind.
Switchyard routes every token to a few experts. A mixture of experts model has many feed forward
networks, and a small router chooses which ones to use for each token in the sequence.
It is the best of times and the worst of times; it is the age of wisdom and the age of foolishness.
Numbers like 1, 2, 3, 10, 42 and 2024 appear in text, as do questions? and exclamations!
She sells sea shells on the sea shore. How much wood would a woodchuck chuck if it could?
The rain in Spain stays mainly in the plain. To be, or not to be: that is the question.
In the beginning the model was random, and then it learned to predict the next token.
"""

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2
N_BYTE = 256                                # <0x00>..<0xFF> at ids 3..258
FIRST_LEARNED_ID = len(SPECIAL_TOKENS) + N_BYTE


def _corpus_words(text: str) -> Counter:
    """Split like Metaspace(prepend_scheme="first", split=True) would: words carry a leading ▁."""
    words: Counter = Counter()
    for line in text.strip().splitlines():
        for w in line.split():
            words[SPM + w] += 1
    return words


def train_bpe(vocab_size: int, text: str = CORPUS):
    """Deterministic SentencePiece-style BPE: returns (vocab dict, merges list).

    vocab: <unk>=0 <s>=1 </s>=2, <0x00>..<0xFF>=3..258, then single characters of the corpus
    (most frequent first), then merged pieces in merge order, until vocab_size is reached.
    Ties are broken lexicographically so the result is reproducible.
    """
    words = _corpus_words(text)
    vocab: dict[str, int] = {}
    for t in SPECIAL_TOKENS:
        vocab[t] = len(vocab)
    for b in range(N_BYTE):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    room = vocab_size - len(vocab)
    if room < 8:
        raise ValueError(f"vocab_size {vocab_size} too small")
    char_freq: Counter = Counter()
    for w, c in words.items():
        for ch in w:
            char_freq[ch] += c
    # Keep the most frequent characters as pieces but leave at least ~1/3 of the room for merges;
    # rarer characters fall back to byte tokens (exercises byte_fallback on ordinary text too).
    n_chars = min(len(char_freq), max(1, (2 * room) // 3))
    chars = sorted(char_freq.items(), key=lambda kv: (-kv[1], kv[0]))[:n_chars]
    for ch, _ in chars:
        vocab[ch] = len(vocab)
    # words as symbol sequences (unknown characters are opaque symbols that never merge)
    seqs = {w: [ch if ch in vocab else None for ch in w] for w in words}
    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size:
        pairs: Counter = Counter()
        for w, syms in seqs.items():
            for a, b in zip(syms, syms[1:]):
                if a is not None and b is not None:
                    pairs[(a, b)] += words[w]
        if not pairs:
            break
        (a, b), _ = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        new = a + b
        merges.append((a, b))
        if new not in vocab:
            vocab[new] = len(vocab)
        for w, syms in seqs.items():
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            seqs[w] = out
    if len(vocab) != vocab_size:
        raise ValueError(f"corpus too small for vocab_size {vocab_size} (got {len(vocab)})")
    return vocab, merges


def build_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    vocab, merges = train_bpe(vocab_size)
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPM, prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([
        decoders.Replace(SPM, " "),
        decoders.ByteFallback(),
        decoders.Fuse(),
        decoders.Strip(content=" ", left=1, right=0),
    ])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A",
        pair="<s> $A <s> $B",
        special_tokens=[("<s>", 1)],
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        add_bos_token=True,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    return hf


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

PROMPT_TEXT_A = "The quick brown fox jumps over the lazy dog"
PROMPT_TEXT_B = "Once upon a time, in a small village by the sea,"
PROMPT_TEXT_C = "Mixture of experts routes every token"
PROMPT_UNICODE = "Naïve café: 🚀 über 東京!"

MODELS = [
    dict(name="top1", seed=1001, stored="float32", shard=None,
         config=dict(hidden_size=32, num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=1,
                     num_attention_heads=4, num_key_value_heads=2, intermediate_size=64, vocab_size=320,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         cases=[(PROMPT_TEXT_A, 8), (PROMPT_UNICODE, 10), (PROMPT_TEXT_B, 12)]),
    dict(name="top2", seed=2002, stored="float32", shard=None,
         config=dict(hidden_size=64, num_hidden_layers=3, num_local_experts=8, num_experts_per_tok=2,
                     num_attention_heads=4, num_key_value_heads=1, intermediate_size=96, vocab_size=384),
         cases=[(PROMPT_TEXT_B, 10), (PROMPT_UNICODE, 8), (PROMPT_TEXT_C, 12)]),
    dict(name="top3_sliding", seed=3003, stored="float32", shard=None,
         config=dict(hidden_size=48, num_hidden_layers=2, num_local_experts=6, num_experts_per_tok=3,
                     num_attention_heads=6, num_key_value_heads=2, intermediate_size=64, vocab_size=352,
                     sliding_window=5),
         cases=[(PROMPT_TEXT_A, 10), (PROMPT_UNICODE, 10), (PROMPT_TEXT_B, 10)]),
    dict(name="bf16_stored", seed=4004, stored="bfloat16", shard=None,
         config=dict(hidden_size=64, num_hidden_layers=3, num_local_experts=8, num_experts_per_tok=2,
                     num_attention_heads=4, num_key_value_heads=1, intermediate_size=96, vocab_size=384),
         cases=[(PROMPT_TEXT_A, 10), (PROMPT_UNICODE, 8)]),
    dict(name="sharded", seed=5005, stored="float32", shard="150KB",
         config=dict(hidden_size=32, num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2,
                     num_attention_heads=4, num_key_value_heads=2, intermediate_size=64, vocab_size=320),
         cases=[(PROMPT_TEXT_C, 8), (PROMPT_UNICODE, 8)]),
    dict(name="tied", seed=6006, stored="float32", shard=None,
         config=dict(hidden_size=32, num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=64,
                     vocab_size=320, tie_word_embeddings=True),
         cases=[(PROMPT_TEXT_A, 8), (PROMPT_UNICODE, 8)]),
]

CONFIG_DEFAULTS = dict(
    max_position_embeddings=256,
    initializer_range=0.1,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=None,
    router_jitter_noise=0.0,
    attention_dropout=0.0,
)


class NearTie(Exception):
    pass


def make_model(spec: dict, seed: int) -> MixtralForCausalLM:
    cfg = MixtralConfig(**{**CONFIG_DEFAULTS, **spec["config"]})
    torch.manual_seed(seed)
    model = MixtralForCausalLM(cfg)
    # RMSNorm weights initialise to exactly 1; perturb them so a runtime that ignores them fails.
    # The final norm is scaled up (x3) so the random model's logits are less flat and greedy
    # top-1/top-2 gaps are comfortably large.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                scale = FINAL_NORM_SCALE if name == "model.norm.weight" else 1.0
                p.copy_(scale * (1.0 + 0.2 * torch.randn_like(p)))
    model.eval()
    return model


def save_model(model: MixtralForCausalLM, spec: dict, out_dir: str) -> None:
    kwargs = {}
    if spec["shard"]:
        kwargs["max_shard_size"] = spec["shard"]
    if spec["stored"] == "bfloat16":
        model = model.to(torch.bfloat16)
    model.save_pretrained(out_dir, **kwargs)


def expert_counts(router_logits, top_k: int, num_experts: int, rows: slice | None = None) -> list[list[int]]:
    """router_logits: per MoE layer a (tokens, E) tensor. Count top-k selections per expert."""
    out = []
    for layer_logits in router_logits:
        lg = layer_logits.reshape(-1, num_experts)
        if rows is not None:
            lg = lg[rows]
        probs = torch.softmax(lg.float(), dim=-1)
        idx = torch.topk(probs, top_k, dim=-1).indices
        out.append(torch.bincount(idx.reshape(-1), minlength=num_experts).tolist())
    return out


def router_min_gap(router_logits, top_k: int, num_experts: int) -> float:
    g = math.inf
    if top_k >= num_experts:
        return g
    for layer_logits in router_logits:
        probs = torch.softmax(layer_logits.reshape(-1, num_experts).float(), dim=-1)
        s = torch.sort(probs, dim=-1, descending=True).values
        g = min(g, float((s[:, top_k - 1] - s[:, top_k]).min()))
    return g


def add_counts(a, b):
    return [[x + y for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]


@torch.no_grad()
def greedy_cached(model, prompt_ids: list[int], n: int):
    """Own greedy loop with the KV cache. Returns ids, raw f32 logits rows, router logits per forward."""
    cfg = model.config
    ids = torch.tensor([prompt_ids])
    out = model(input_ids=ids, use_cache=True, output_router_logits=True)
    past = out.past_key_values
    rows = [out.logits[0, -1].float().clone()]
    prefill_router = [r.detach().clone() for r in out.router_logits]
    decode_router = []
    completion = [int(rows[0].argmax())]
    for _ in range(n - 1):
        nxt = torch.tensor([[completion[-1]]])
        out = model(input_ids=nxt, past_key_values=past, use_cache=True, output_router_logits=True)
        past = out.past_key_values
        row = out.logits[0, -1].float().clone()
        rows.append(row)
        decode_router.append([r.detach().clone() for r in out.router_logits])
        completion.append(int(row.argmax()))
    assert len(out.router_logits) == cfg.num_hidden_layers
    return completion, rows, prefill_router, decode_router


def round7(x: float) -> float:
    return float(f"{x:.7g}")


def compute_case(model, tokenizer, prompt: str, n: int) -> dict:
    cfg = model.config
    E, K = cfg.num_local_experts, cfg.num_experts_per_tok
    prompt_ids = tokenizer(prompt)["input_ids"]
    assert prompt_ids[0] == 1, "BOS must be added"
    completion, rows, prefill_router, decode_router = greedy_cached(model, prompt_ids, n)

    # ---- logit gaps --------------------------------------------------------------------
    gaps = []
    for row in rows:
        top2 = torch.topk(row, 2).values
        gaps.append(float(top2[0] - top2[1]))
    min_gap = min(gaps)
    if min_gap <= LOGIT_GAP_TARGET:
        raise NearTie(f"prompt {prompt!r}: greedy top-1/top-2 gap {min_gap:.3g} <= {LOGIT_GAP_TARGET}")
    assert min_gap > LOGIT_GAP_MIN

    # ---- expert load from the cached forwards --------------------------------------------
    prefill = expert_counts(prefill_router, K, E)
    decode = [[0] * E for _ in range(cfg.num_hidden_layers)]
    for r in decode_router:
        decode = add_counts(decode, expert_counts(r, K, E))
    rgap = min([router_min_gap(prefill_router, K, E)] + [router_min_gap(r, K, E) for r in decode_router])
    if rgap <= ROUTER_GAP_MIN:
        raise NearTie(f"prompt {prompt!r}: router k-th/(k+1)-th prob gap {rgap:.3g} <= {ROUTER_GAP_MIN}")
    P = len(prompt_ids)
    assert all(sum(l) == P * K for l in prefill), prefill
    assert all(sum(l) == (n - 1) * K for l in decode), decode

    # ---- cross-check 1: model.generate (raw logits) ---------------------------------------
    with torch.no_grad():
        g = model.generate(
            input_ids=torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, P, dtype=torch.long),
            do_sample=False,
            num_beams=1,
            max_new_tokens=n,
            min_new_tokens=n,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=cfg.eos_token_id,
        )
    gen_ids = g.sequences[0, P:].tolist()
    if gen_ids != completion:
        raise AssertionError(f"generate() disagrees with cached loop: {gen_ids} vs {completion}")
    for i, (a, b) in enumerate(zip(g.logits, rows)):
        a = a[0].float()
        # min_new_tokens masks EOS in the *processed* scores only; output_logits must be raw
        d = float((a - b).abs().max())
        if not d <= CROSS_CHECK_ATOL:
            raise AssertionError(f"generate() raw logits differ at step {i} by {d}")

    # ---- cross-check 2: a plain no-cache full forward over prompt + completion[:-1] -------
    full = torch.tensor([prompt_ids + completion[:-1]])
    with torch.no_grad():
        fo = model(input_ids=full, use_cache=False, output_router_logits=True)
    full_rows = fo.logits[0, P - 1:].float()
    if full_rows.argmax(-1).tolist() != completion:
        raise AssertionError("no-cache forward disagrees on tokens")
    d = float((full_rows - torch.stack(rows)).abs().max())
    if not d <= CROSS_CHECK_ATOL:
        raise AssertionError(f"no-cache forward logits differ by {d}")
    if expert_counts(fo.router_logits, K, E, slice(0, P)) != prefill:
        raise AssertionError("no-cache forward disagrees on prefill expert load")
    if expert_counts(fo.router_logits, K, E, slice(P, None)) != decode:
        raise AssertionError("no-cache forward disagrees on decode expert load")

    # ---- assemble ---------------------------------------------------------------------------
    step_logits, step_top = [], []
    for row in rows:
        lp = torch.log_softmax(row.double(), dim=-1)  # f32 logits, log_softmax in f64 for stability
        order = sorted(range(lp.numel()), key=lambda j: (-float(lp[j]), j))[:TOP_LOGPROBS]
        step_top.append([{"token_id": j, "logprob": round7(float(lp[j]))} for j in order])
        step_logits.append([round7(v) for v in row.tolist()])
    return {
        "prompt": prompt,
        "prompt_token_ids": prompt_ids,
        "max_new_tokens": n,
        "completion_token_ids": completion,
        "completion_text": tokenizer.decode(completion),
        "min_top1_top2_logit_gap": round7(min_gap),
        "min_router_topk_prob_gap": round7(rgap),
        "step_logits": step_logits,
        "step_top_logprobs": step_top,
        "expert_load": {"prefill": prefill, "decode": decode},
    }


def check_tokenizer_roundtrip(folder: str, tok: PreTrainedTokenizerFast, prompts) -> None:
    """What a user gets: AutoTokenizer from the folder and a raw tokenizers.Tokenizer from tokenizer.json."""
    auto = AutoTokenizer.from_pretrained(folder)
    raw = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    for p in prompts:
        a = tok(p)["input_ids"]
        b = auto(p)["input_ids"]
        c = raw.encode(p).ids
        if not (a == b == c):
            raise AssertionError(f"tokenizer round trip differs for {p!r}: {a} / {b} / {c}")
        if auto.decode(a, skip_special_tokens=True) != p:
            raise AssertionError(f"decode round trip failed for {p!r}: {auto.decode(a, skip_special_tokens=True)!r}")


def build_one(spec: dict, out_root: str) -> dict:
    folder = os.path.join(out_root, spec["name"])
    prompts = [p for p, _ in spec["cases"]]
    last_err = None
    for attempt in range(MAX_SEED_TRIES):
        seed = spec["seed"] + attempt
        if os.path.exists(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        model = make_model(spec, seed)
        save_model(model, spec, folder)
        del model
        tok = build_tokenizer(spec["config"]["vocab_size"])
        tok.save_pretrained(folder)
        check_tokenizer_roundtrip(folder, tok, prompts)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        # The reference is what a user loading the files gets, always computed in float32.
        model = MixtralForCausalLM.from_pretrained(folder, dtype=torch.float32)
        model.eval()
        assert next(model.parameters()).dtype == torch.float32
        try:
            cases = [compute_case(model, tokenizer, p, n) for p, n in spec["cases"]]
        except NearTie as e:
            last_err = e
            print(f"  [{spec['name']}] seed {seed}: {e}; trying next seed", flush=True)
            continue
        if spec["config"].get("sliding_window"):
            w = spec["config"]["sliding_window"]
            assert all(len(c["prompt_token_ids"]) > w for c in cases), "prompts must exceed the window"
        ref = {
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__.split("+")[0],
            "tokenizers_version": tokenizers.__version__,
            "reference_dtype": "float32",
            "stored_dtype": spec["stored"],
            "seed": seed,
            "attn_implementation": model.config._attn_implementation,
            "generator": "Scripts/reference/model_fixtures.py",
            "min_top1_top2_logit_gap": min(c["min_top1_top2_logit_gap"] for c in cases),
            "cases": cases,
        }
        with open(os.path.join(folder, "reference.json"), "w") as f:
            json.dump(ref, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        return ref
    raise SystemExit(f"[{spec['name']}] no seed in {MAX_SEED_TRIES} tries avoided near ties: {last_err}")


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(repo, "Tests", "Fixtures"),
                    help="fixtures root; models go to OUT/models/<name> (default: %(default)s)")
    ap.add_argument("--only", default="", help="comma-separated model names to (re)build")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    only = {s for s in args.only.split(",") if s}
    unknown = only - {m["name"] for m in MODELS}
    if unknown:
        ap.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    out_root = os.path.join(args.out, "models")
    os.makedirs(out_root, exist_ok=True)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, tokenizers {tokenizers.__version__}")
    t_all = time.time()
    for spec in MODELS:
        if only and spec["name"] not in only:
            continue
        t0 = time.time()
        ref = build_one(spec, out_root)
        size = sum(os.path.getsize(os.path.join(out_root, spec["name"], f))
                   for f in os.listdir(os.path.join(out_root, spec["name"])))
        print(f"  {spec['name']:<14} seed {ref['seed']:<5} cases {len(ref['cases'])}  "
              f"min logit gap {ref['min_top1_top2_logit_gap']:.4g}  "
              f"{size / 1e6:.2f} MB  {time.time() - t0:.1f}s", flush=True)
    print(f"wrote {out_root} in {time.time() - t_all:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
