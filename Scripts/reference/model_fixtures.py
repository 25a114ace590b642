#!/usr/bin/env python3
"""Write Switchyard's model reference fixtures from Hugging Face transformers.

## What each fixture covers

Every fixture is a folder under Tests/Fixtures/models/ that transformers wrote with
save_pretrained (config.json, *.safetensors, tokenizer files, generation_config.json) plus
reference.json. Architecture facts the fixtures rely on: Scripts/reference/ARCHITECTURES.md.

**Mixtral** (`MixtralForCausalLM`; SentencePiece-style byte-fallback BPE, BOS `<s>`):
- `top1`: top-1 routing over 4 experts, explicit rope_parameters.
- `top2`: top-2 over 8 experts, a single KV head (MQA).
- `top3_sliding`: top-3 over 6 experts, sliding_window 5 shorter than every prompt.
- `bf16_stored`: weights stored as bfloat16, reference computed after upcasting to float32.
- `sharded`: float32 split over three safetensors shards with an index.
- `tied`: tie_word_embeddings, head_dim (16) larger than hidden/heads (8).

**Qwen3-MoE** (`Qwen3MoeForCausalLM`; Qwen2-style byte-level BPE, no BOS, ChatML template):
- `qwen3_moe_mixed`: mlp_only_layers [1] (layer 1 is a dense MLP with intermediate_size),
  8 experts top-2 with norm_topk_prob true, head_dim 24 != hidden/heads 16, GQA (4 heads, 2 KV),
  per-head q_norm/k_norm, untied head, rope_theta 1e6, embedding rows beyond the tokenizer.
- `qwen3_moe_top8_bf16`: 16 experts top-8, norm_topk_prob false, tied embeddings, stored
  bfloat16, head_dim 16 != hidden/heads 8; config.json in the Hub spelling (`num_experts`,
  top-level `rope_theta`) instead of 5.23's (`num_local_experts`, `rope_parameters`).
- `qwen3_moe_top1`: top-1 without renormalisation, decoder_sparse_step 2 (layers 1 and 3 MoE,
  0 and 2 dense), head_dim absent from config.json (defaults to hidden/heads).

**Qwen2-MoE** (`Qwen2MoeForCausalLM`; Qwen2-style byte-level BPE, no BOS, ChatML template):
- `qwen2_moe_shared`: shared expert (intermediate 48) behind a sigmoid gate, random q/k/v biases,
  8 experts top-4 without renormalisation, mlp_only_layers [0] (layer 0 dense).
- `qwen2_moe_sliding_bf16`: use_sliding_window with sliding_window 5 and max_window_layers 2, so
  only layer 0 slides (layer 2 is even but >= max_window_layers); prompts and completions longer
  than the window; norm_topk_prob true; stored bfloat16; config.json in the Hub spelling (no
  `layer_types`, top-level `rope_theta`), so a runtime must derive the per-layer rule itself.

**OLMoE** (`OlmoeForCausalLM`; GPT-NeoX-style byte-level BPE, `<|endoftext|>` as bos/eos/pad,
Tulu template):
- `olmoe_basic`: 8 experts top-2 without renormalisation, q_norm over the whole q projection
  (hidden) and k_norm over the whole k projection (KV heads x head_dim, GQA), embedding rows
  beyond the tokenizer.
- `olmoe_64_bf16`: 64 experts top-8, expert intermediate 16, stored bfloat16, clip_qkv 1.5 (which
  clips), config.json in the Hub spelling (top-level `rope_theta`).

**GLM-4.5** (`Glm4MoeForCausalLM`; the Qwen3-style byte-level BPE stands in for GLM's own tokenizer,
whose special tokens are not under test here):
- `glm4_moe_groups`: sigmoid router with a random e_score_correction_bias, 8 experts in n_group 4
  groups of 2 of which topk_group 2 are kept, top-3, norm_topk_prob true, routed_scaling_factor 2.5;
  n_shared_experts 1; first_k_dense_replace 1 (layer 0 dense); head_dim 16 with
  partial_rotary_factor 0.5 (8 rotated dimensions); use_qk_norm; attention_bias (random q/k/v biases).
- `glm4_moe_air_bf16`: stored bfloat16 (the correction bias stays float32, as transformers keeps
  it); config.json in the Hub spelling (top-level `rope_theta`, `partial_rotary_factor`,
  `n_routed_experts`); 16 experts top-4 in one group (n_group 1), n_shared_experts 2,
  first_k_dense_replace 0 (every layer MoE), no q/k norm, attention_bias, head_dim 12 (6 rotated
  dimensions), routed_scaling_factor 1.

**DeepSeek-V3** (`DeepseekV3ForCausalLM`; multi-head latent attention; GLM-4.5's router, shared
experts and dense first layers; the Qwen3-style byte-level BPE stands in for DeepSeek's tokenizer):
- `deepseek_v3_mla`: q_lora_rank 24 (q_a_proj -> q_a_layernorm -> q_b_proj), kv_lora_rank 16,
  qk_nope_head_dim 8, qk_rope_head_dim 8 (interleaved RoPE pairs, rope_interleave true),
  v_head_dim 12 (unlike the q/k head width); 8 experts in n_group 4 of which topk_group 2 are kept,
  top-3, random correction bias, routed_scaling_factor 2.5, n_shared_experts 1,
  first_k_dense_replace 1, attention_bias (q_a_proj, kv_a_proj_with_mqa, o_proj biases).
- `deepseek_v3_q_proj_bf16`: q_lora_rank null (a plain q_proj), stored bfloat16 (the correction
  bias stays float32), config.json in the Hub spelling (top-level `rope_theta`), one group,
  n_shared_experts 2, first_k_dense_replace 0, no attention bias, norm_topk_prob false,
  qk_nope_head_dim 12 / qk_rope_head_dim 4 / v_head_dim 8.
- `deepseek_v3_yarn`: rope_parameters yarn (factor 4, original_max_position_embeddings 64,
  beta_fast 32 / beta_slow 1, mscale 0.707 and mscale_all_dim 1, so both the cos/sin attention
  factor and the softmax scale's mscale² differ from 1).
- `deepseek_v3_fp8`: FP8 as DeepSeek-V3 ships it (see quantize_fp8): every linear weight (attention
  projections, the dense layer's MLP, shared and routed experts) float8_e4m3fn with a float32
  `weight_scale_inv` per 32 x 32 block (hidden 64 and widths 24, 40, 48, 96: several blocks, partial
  ones at the edges), `quantization_config` quant_method fp8; embeddings, norms, routers and lm_head
  bfloat16 (the correction bias float32). The reference is transformers in float32 on the
  dequantized weights (e4m3 value x scale_inv of its block, one float32 product).

**gpt-oss** (`GptOssForCausalLM`; the Qwen3 byte-level tokenizer stands in):
- `gpt_oss_bf16`: bfloat16, GptOssConfig's defaults for YaRN (factor 32 over 4096 positions,
  truncate false), swiglu_alpha 1.702 / swiglu_limit 7, layer_types alternating sliding (window 5)
  and full; q/k/v/o biases, attention sinks, router bias and expert biases all random.
- `gpt_oss_clamp`: float32, swiglu_limit 0.5 so both clamps of the SwiGLU bite, layer_types
  full/sliding/sliding (window 4), 6 experts top-3, head_dim 12 != hidden/heads.
- `gpt_oss_mxfp4`: the experts in MXFP4 as the released checkpoints store them (`*_blocks`,
  `*_scales`, `quantization_config.quant_method` mxfp4; see quantize_mxfp4), everything else
  bfloat16; the reference is transformers' own load of that folder (on the CPU it dequantizes the
  experts), so the reference computes on exactly the dequantized weights.
**DeepSeek-V2** (`DeepseekV2ForCausalLM`; DeepSeek-V3's multi-head latent attention with RoPE as
complex products of interleaved pairs; a softmax router, greedy or group-limited, weights never
renormalised; the Qwen3-style byte-level BPE stands in for DeepSeek's tokenizer):
- `deepseek_v2_greedy`: topk_method greedy, q_lora_rank 20, kv_lora_rank 12, qk_nope_head_dim 8 /
  qk_rope_head_dim 6 / v_head_dim 10, 8 experts top-2, routed_scaling_factor 2, n_shared_experts 2,
  first_k_dense_replace 1, attention_bias.
- `deepseek_v2_groups`: topk_method group_limited_greedy (a group scores its best expert), 12 experts
  in n_group 4 of which topk_group 2 are kept, top-3, q_lora_rank null (V2-Lite's plain q_proj),
  routed_scaling_factor 1.5, YaRN RoPE with mscale = mscale_all_dim 0.707 (V2's own choice: cos/sin
  unscaled, the softmax scale × mscale²), no attention bias.
- `deepseek_v2_lite_bf16`: stored bfloat16, config.json in the Hub spelling (top-level `rope_theta`,
  `n_routed_experts`), greedy over 16 experts top-4, q_proj, n_shared_experts 1, no dense layer.

**MiniMax-M2** (`MiniMaxM2ForCausalLM`; the Qwen3-style byte-level BPE stands in for MiniMax's):
- `minimax_m2_basic`: sigmoid router with a random e_score_correction_bias (choice only), 8 experts
  top-2, weights renormalised; q_norm/k_norm over the whole q and k projections (GQA: 4 heads, 2 KV),
  head_dim 16 with partial_rotary_factor 0.5 (8 rotated dimensions).
- `minimax_m2_bf16`: stored bfloat16 (the correction bias stays float32), config.json in the Hub
  spelling (top-level `rope_theta`, `rotary_dim` 6 of head_dim 12), 16 experts top-4, one KV head.
- `minimax_m2_fp8`: FP8 as MiniMax-M2 ships it: attention projections and experts float8_e4m3fn in
  DeepSeek's 128 x 128 blocks (every matrix here one partial block), the rest float32; reference on
  the dequantized weights, as deepseek_v3_fp8.

## Contract

For every tiny checkpoint in MODELS (`arch` selects the transformers classes, default mixtral):

  1. builds the tokenizer with the `tokenizers` library (merges trained on an inline corpus up to
     the model's vocab size; SentencePiece-style for Mixtral, byte-level for Qwen and OLMoE) and
     saves it with transformers' save_pretrained;
  2. builds the model with a fixed torch seed (RMSNorm weights, including q_norm/k_norm, are
     perturbed away from 1; attention biases and the shared-expert gate get random values) and
     saves it with save_pretrained (float32, bfloat16 or sharded);
  3. RELOADS the saved folder with from_pretrained(dtype=torch.float32) and computes, per case,
     greedy completion ids, raw f32 step logits, top-5 logprobs and per-expert routing counts;
  4. cross-checks its own KV-cache greedy loop against model.generate() and against a plain
     no-cache full forward, and asserts every greedy step has a top-1/top-2 logit gap > 1e-3
     (and that the router's k-th/(k+1)-th expert choice is not a near tie). If a seed gives a
     near tie, the next seed is tried (deterministically) and the used seed is recorded.

For the Qwen and OLMoE fixtures it also checks that the eager attention / eager experts paths give
the same logits as the default sdpa / grouped_mm ones, that every feature under test changes the
logits (sliding window, q/k/v biases, shared-expert gate, clip_qkv, top-k renormalisation), and
that AutoTokenizer and the raw tokenizer.json agree (GLM-4.5 also: the correction bias, the
expert groups, routed_scaling_factor, partial RoPE, the shared experts); reference.json then also holds
`architecture`, `moe_layers`, `experts_implementation`, `chat_cases` and `decode_cases`.
`expert_load` lists every decoder layer; a dense layer's entry is [].

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
import unicodedata
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
import tokenizers  # noqa: E402
from tokenizers import Tokenizer, AddedToken, Regex, decoders, normalizers, pre_tokenizers, processors  # noqa: E402
from tokenizers.models import BPE  # noqa: E402
from tokenizers.trainers import BpeTrainer  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    GenerationConfig,
    DeepseekV2Config,
    DeepseekV2ForCausalLM,
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
    MiniMaxM2Config,
    MiniMaxM2ForCausalLM,
    Glm4MoeConfig,
    Glm4MoeForCausalLM,
    GptOssConfig,
    GptOssForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    OlmoeConfig,
    OlmoeForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_fixtures  # noqa: E402  (its corpus and edge-case strings)

LOGIT_GAP_MIN = 1e-3          # hard floor: greedy top-1 minus top-2 logit, every step (asserted)
LOGIT_GAP_TARGET = 1e-2       # seeds are searched (deterministically) until every step clears this
ROUTER_GAP_MIN = 1e-4         # router softmax prob: k-th minus (k+1)-th expert, every routed token
CROSS_CHECK_ATOL = 1e-4       # cached loop vs generate vs no-cache forward, logits
IMPLEMENTATION_ATOL = 1e-4    # eager attention + eager experts vs the default sdpa + grouped_mm
FEATURE_EFFECT_MIN = 1e-2     # turning off a feature under test must move some logit by more
MAX_SEED_TRIES = 20
FINAL_NORM_SCALE = 3.0
BIAS_STD = 0.5                # q/k/v biases (Qwen2-MoE); transformers initialises them to 0
SHARED_GATE_STD = 0.5         # shared_expert_gate weight, so sigmoid(gate(x)) varies per token
CORRECTION_BIAS_STD = 0.1     # GLM-4.5 e_score_correction_bias (0 at init); sigmoid scores are in (0, 1)
SINK_STD = 1.0                # gpt-oss attention sinks: a logit beside the scores, so O(1)
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
# Byte-level tokenizers (Qwen2-style and GPT-NeoX-style)
# --------------------------------------------------------------------------------------------

# Qwen2Tokenizer's split regex, as in Tests/Fixtures/tokenizers/qwen2-bytelevel/tokenizer.json
# (checked against that file in build_byte_level_tokenizer).
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_TOKENIZER_FIXTURE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "Tests", "Fixtures", "tokenizers", "qwen2-bytelevel", "tokenizer.json",
)
CHAT_TEMPLATES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "Tests", "Fixtures", "chat_templates",
)

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"

# One entry per byte-level tokenizer family. `special` tokens follow the trained pieces, in this
# order (as on the Hub: Qwen's <|endoftext|> <|im_start|> <|im_end|> come right after the BPE
# pieces); `added` are non-special added tokens after them.
BYTE_LEVEL_STYLES = {
    "qwen2": dict(
        special=[ENDOFTEXT, IM_START, IM_END], added=[], tokenizer_class="Qwen2Tokenizer",
        bos=None, eos=IM_END, pad=ENDOFTEXT, chat_template="qwen2-moe-instruct.json",
    ),
    "qwen3": dict(
        special=[ENDOFTEXT, IM_START, IM_END], added=["<think>", "</think>"], tokenizer_class="Qwen2Tokenizer",
        bos=None, eos=IM_END, pad=ENDOFTEXT, chat_template="qwen3-style.json",
    ),
    "gpt_neox": dict(
        special=[ENDOFTEXT], added=[], tokenizer_class="GPTNeoXTokenizer",
        bos=ENDOFTEXT, eos=ENDOFTEXT, pad=ENDOFTEXT, chat_template="tulu-olmoe.json",
    ),
}


def byte_level_pre_tokenizer(style: str):
    if style == "gpt_neox":
        # What transformers' GPTNeoXTokenizer rebuilds: ByteLevel with the GPT-2 regex, no prefix space.
        return pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def train_byte_level_bpe(n_pieces: int, style: str):
    """Deterministic byte-level BPE: the 256 byte symbols, then merges, n_pieces in all.

    Trained with the `tokenizers` BpeTrainer on this file's corpus plus tokenizer_fixtures.py's
    (code, several scripts, emoji), NFC-normalised and pre-tokenized as the tokenizer will be.
    """
    trainer_tok = Tokenizer(BPE())
    trainer_tok.normalizer = normalizers.NFC()
    trainer_tok.pre_tokenizer = byte_level_pre_tokenizer(style)
    trainer = BpeTrainer(
        vocab_size=n_pieces, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    trainer_tok.train_from_iterator(CORPUS.strip().splitlines() + list(tokenizer_fixtures.CORPUS), trainer=trainer)
    trained = json.loads(trainer_tok.to_str())["model"]
    if len(trained["vocab"]) != n_pieces:
        raise ValueError(f"corpus too small for {n_pieces} byte-level pieces (got {len(trained['vocab'])})")
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    return trained["vocab"], merges


def chat_template(style: str) -> str:
    with open(os.path.join(CHAT_TEMPLATES, BYTE_LEVEL_STYLES[style]["chat_template"]), encoding="utf-8") as f:
        return json.load(f)["template"]


def build_byte_level_tokenizer(style: str, vocab_size: int, padding: int = 0) -> PreTrainedTokenizerFast:
    """A Qwen2-style or GPT-NeoX-style byte-level BPE filling vocab_size - padding ids.

    The last `padding` embedding rows have no token (as Qwen's and OLMoE's Hub checkpoints).
    """
    s = BYTE_LEVEL_STYLES[style]
    n_pieces = vocab_size - padding - len(s["special"]) - len(s["added"])
    vocab, merges = train_byte_level_bpe(n_pieces, style)
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = byte_level_pre_tokenizer(style)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in s["special"]])
    if s["added"]:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in s["added"]])
    if style != "gpt_neox":
        with open(QWEN2_TOKENIZER_FIXTURE, encoding="utf-8") as f:
            known = json.load(f)
        mine = json.loads(tok.to_str())
        for key in ("normalizer", "pre_tokenizer", "decoder"):
            if mine[key] != known[key]:
                raise AssertionError(f"{key} differs from {QWEN2_TOKENIZER_FIXTURE}: {mine[key]} vs {known[key]}")
    assert tok.get_vocab_size(with_added_tokens=True) == vocab_size - padding
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=s["bos"],
        eos_token=s["eos"],
        pad_token=s["pad"],
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )


def save_byte_level_tokenizer(hf: PreTrainedTokenizerFast, style: str, folder: str) -> None:
    """save_pretrained, then tokenizer_config.json as the Hub checkpoints of the family have it:
    the family's tokenizer_class, the chat template inline, no unk token (byte-level needs none)."""
    s = BYTE_LEVEL_STYLES[style]
    hf.save_pretrained(folder)
    path = os.path.join(folder, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config.update({
        "tokenizer_class": s["tokenizer_class"],
        "bos_token": s["bos"],
        "unk_token": None,
        "chat_template": chat_template(style),
    })
    if style == "gpt_neox":
        config.update({"add_bos_token": False, "add_eos_token": False})
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    for extra in ("chat_template.jinja", "special_tokens_map.json"):
        if os.path.exists(os.path.join(folder, extra)):
            os.remove(os.path.join(folder, extra))


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table used by the ByteLevel pre-tokenizer/decoder."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_CHARS = _bytes_to_unicode()


def byte_token(tokenizer, b: int) -> int:
    """The id of the single-byte token for byte b."""
    i = tokenizer.convert_tokens_to_ids(BYTE_CHARS[b])
    assert isinstance(i, int) and tokenizer.convert_ids_to_tokens(i) == BYTE_CHARS[b], b
    return i


CHAT_CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a concise assistant."},
     {"role": "user", "content": "What is a mixture of experts?"}],
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Naïve café: 🚀 über 東京!"}],
]


def chat_cases(tokenizer) -> list[dict]:
    out = []
    for messages in CHAT_CONVERSATIONS:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # transformers 5 returns a BatchEncoding (return_dict defaults to True) for tokenize=True.
        enc = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        ids = enc["input_ids"] if hasattr(enc, "keys") else enc
        ids = [int(i) for i in ids]
        assert isinstance(text, str) and ids == tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append({"messages": messages, "add_generation_prompt": True, "text": text, "ids": ids})
    return out


def decode_cases(tokenizer, style: str) -> list[dict]:
    """Id lists to decode, including byte sequences that are not valid UTF-8."""
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    b = lambda *xs: [byte_token(tokenizer, x) for x in xs]  # noqa: E731
    sp = lambda t: [tokenizer.convert_tokens_to_ids(t)]  # noqa: E731
    cases = [
        ("text with special tokens",
         (sp(IM_START) + enc("user\nNaïve café: 🚀 über 東京!") + sp(IM_END)) if style != "gpt_neox"
         else enc("Naïve café: 🚀 über 東京!") + sp(ENDOFTEXT)),
        ("a lone continuation byte 0x80", b(0x80)),
        ("text, a lone continuation byte, text", enc("ab") + b(0x80) + enc(" cd")),
        ("a truncated 3-byte character (E6 9D of 東)", b(0xE6, 0x9D)),
        ("a 3-byte character from three single-byte tokens (東)", b(0xE6, 0x9D, 0xB1)),
        ("text then a truncated 4-byte emoji (F0 9F 9A of 🚀)", enc("go ") + b(0xF0, 0x9F, 0x9A)),
        ("0xFF (never valid UTF-8) between special tokens", sp(ENDOFTEXT) + b(0xFF) + sp(ENDOFTEXT)),
    ]
    if BYTE_LEVEL_STYLES[style]["added"]:
        cases.append(("non-special added tokens <think> </think>", enc("<think>\nhm\n</think>\n\nok") + sp(IM_END)))
    out = []
    for what, ids in cases:
        out.append({
            "what": what,
            "ids": ids,
            "decoded": tokenizer.decode(ids),
            "decoded_skipping_special_tokens": tokenizer.decode(ids, skip_special_tokens=True),
        })
    return out


def check_byte_level_tokenizer(folder: str, style: str, tok: PreTrainedTokenizerFast, prompts, vocab_size: int,
                               auto_class: str | None = None):
    """AutoTokenizer (which rebuilds the pipeline from tokenizer_class, or for some model types
    loads tokenizer.json as it is: `auto_class`) vs the raw tokenizer.json vs the in-memory
    tokenizer, on the prompts, the chat texts and tokenizer_fixtures.py's cases."""
    s = BYTE_LEVEL_STYLES[style]
    auto = AutoTokenizer.from_pretrained(folder)
    raw = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    assert type(auto).__name__ == (auto_class or s["tokenizer_class"]), type(auto).__name__
    assert auto.bos_token == s["bos"] and auto.eos_token == s["eos"] and auto.pad_token == s["pad"], \
        (auto.bos_token, auto.eos_token, auto.pad_token)
    assert auto.unk_token is None, auto.unk_token
    assert auto.chat_template == chat_template(style)
    assert len(auto) <= vocab_size, f"tokenizer has {len(auto)} tokens, model vocab_size {vocab_size}"
    assert all(auto.convert_tokens_to_ids(t) < vocab_size for t in s["special"] + s["added"])
    texts = list(prompts) + list(tokenizer_fixtures.CASES)
    texts += [auto.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in CHAT_CONVERSATIONS]
    for p in texts:
        a = tok(p)["input_ids"]
        b = auto(p)["input_ids"]
        c = raw.encode(p).ids
        if not (a == b == c):
            raise AssertionError(f"tokenizer round trip differs for {p!r}: {a} / {b} / {c}")
    for p in prompts:
        ids = auto(p)["input_ids"]
        assert ids == auto(p, add_special_tokens=False)["input_ids"], "no BOS/EOS may be added"
        # Byte-level decoding gives back the NFC-normalised text (the prompts are already NFC).
        if auto.decode(ids, skip_special_tokens=True) != unicodedata.normalize("NFC", p):
            raise AssertionError(f"decode round trip failed for {p!r}: {auto.decode(ids)!r}")
        if raw.decode(ids, skip_special_tokens=True) != auto.decode(ids, skip_special_tokens=True):
            raise AssertionError(f"raw and AutoTokenizer decode differ for {p!r}")


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

PROMPT_TEXT_A = "The quick brown fox jumps over the lazy dog"
PROMPT_TEXT_B = "Once upon a time, in a small village by the sea,"
PROMPT_TEXT_C = "Mixture of experts routes every token"
PROMPT_UNICODE = "Naïve café: 🚀 über 東京!"

ROPE_1E6 = {"rope_type": "default", "rope_theta": 1000000.0}
# With 16 or 64 experts the k-th and (k+1)-th router probabilities sit in the crowded middle of the
# distribution, so most seeds have some routed token closer than ROUTER_GAP_MIN: search longer.
MANY_EXPERTS_SEED_TRIES = 300
# With 64 experts the 8th and 9th probabilities are ~0.02 apart from their neighbours by ~1e-3, and
# no seed in 300 keeps every routed token 1e-4 apart; 1e-5 is still ~100x what f32 reordering moves
# a router probability (and check_against_transformers.py's own router near-tie threshold).
ROUTER_GAP_MIN_64_EXPERTS = 1e-5

# Entry keys: name, arch (default "mixtral"), seed, stored ("float32"/"bfloat16"), shard (None or
# a max_shard_size), config (the arch's transformers config kwargs), cases ([(prompt, n)]), and for
# the byte-level families optionally max_seed_tries, router_gap_min, tokenizer_padding (embedding rows without a token) and
# hub_config (rewrite config.json in the Hub checkpoints' older spelling, see hub_style_config).
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
    # ---- Qwen3-MoE ------------------------------------------------------------------------
    dict(name="qwen3_moe_mixed", arch="qwen3_moe", seed=7007, stored="float32", shard=None, tokenizer_padding=4,
         config=dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=24,
                     num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, intermediate_size=96,
                     mlp_only_layers=[1], decoder_sparse_step=1, norm_topk_prob=True, vocab_size=384,
                     tie_word_embeddings=False, rope_parameters=ROPE_1E6),
         cases=[(PROMPT_TEXT_A, 10), (PROMPT_UNICODE, 8), (PROMPT_TEXT_C, 10)]),
    dict(name="qwen3_moe_top8_bf16", arch="qwen3_moe", seed=8008, stored="bfloat16", shard=None, hub_config=True,
         max_seed_tries=MANY_EXPERTS_SEED_TRIES,
         config=dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2, head_dim=16,
                     num_experts=16, num_experts_per_tok=8, moe_intermediate_size=16, intermediate_size=64,
                     decoder_sparse_step=1, norm_topk_prob=False, vocab_size=448, tie_word_embeddings=True,
                     rope_parameters=ROPE_1E6),
         cases=[(PROMPT_TEXT_B, 10), (PROMPT_UNICODE, 8)]),
    dict(name="qwen3_moe_top1", arch="qwen3_moe", seed=9009, stored="float32", shard=None,
         config=dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                     num_experts=4, num_experts_per_tok=1, moe_intermediate_size=32, intermediate_size=64,
                     decoder_sparse_step=2, norm_topk_prob=False, vocab_size=320,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         cases=[(PROMPT_TEXT_A, 8), (PROMPT_UNICODE, 8), (PROMPT_TEXT_B, 8)]),
    # ---- Qwen2-MoE ------------------------------------------------------------------------
    dict(name="qwen2_moe_shared", arch="qwen2_moe", seed=10010, stored="float32", shard=None,
         config=dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                     num_experts=8, num_experts_per_tok=4, moe_intermediate_size=24,
                     shared_expert_intermediate_size=48, intermediate_size=96, mlp_only_layers=[0],
                     norm_topk_prob=False, qkv_bias=True, vocab_size=352, rope_parameters=ROPE_1E6),
         cases=[(PROMPT_TEXT_C, 10), (PROMPT_UNICODE, 8), (PROMPT_TEXT_A, 10)]),
    dict(name="qwen2_moe_sliding_bf16", arch="qwen2_moe", seed=11011, stored="bfloat16", shard=None, hub_config=True,
         config=dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2,
                     num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                     shared_expert_intermediate_size=32, intermediate_size=64, norm_topk_prob=True,
                     use_sliding_window=True, sliding_window=5, max_window_layers=2, vocab_size=352,
                     rope_parameters=ROPE_1E6),
         cases=[(PROMPT_TEXT_A, 12), (PROMPT_UNICODE, 12), (PROMPT_TEXT_B, 12)]),
    # ---- OLMoE ------------------------------------------------------------------------------
    dict(name="olmoe_basic", arch="olmoe", seed=12012, stored="float32", shard=None, tokenizer_padding=8,
         config=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     num_experts=8, num_experts_per_tok=2, intermediate_size=32, norm_topk_prob=False,
                     vocab_size=352, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         cases=[(PROMPT_TEXT_A, 10), (PROMPT_UNICODE, 8), (PROMPT_TEXT_B, 10)]),
    dict(name="olmoe_64_bf16", arch="olmoe", seed=13013, stored="bfloat16", shard=None, hub_config=True,
         max_seed_tries=MANY_EXPERTS_SEED_TRIES, router_gap_min=ROUTER_GAP_MIN_64_EXPERTS,
         config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                     num_experts=64, num_experts_per_tok=8, intermediate_size=16, norm_topk_prob=False,
                     clip_qkv=1.5, vocab_size=320, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         cases=[(PROMPT_TEXT_C, 8), (PROMPT_UNICODE, 8)]),
    # ---- GLM-4.5 ----------------------------------------------------------------------------
    dict(name="glm4_moe_groups", arch="glm4_moe", seed=14014, stored="float32", shard=None,
         config=dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                     n_routed_experts=8, num_experts_per_tok=3, n_group=4, topk_group=2, moe_intermediate_size=16,
                     n_shared_experts=1, intermediate_size=96, first_k_dense_replace=1, norm_topk_prob=True,
                     routed_scaling_factor=2.5, use_qk_norm=True, attention_bias=True, vocab_size=384,
                     rope_parameters={**ROPE_1E6, "partial_rotary_factor": 0.5}),
         cases=[(PROMPT_TEXT_A, 10), (PROMPT_UNICODE, 8), (PROMPT_TEXT_C, 10)]),
    dict(name="glm4_moe_air_bf16", arch="glm4_moe", seed=15015, stored="bfloat16", shard=None, hub_config=True,
         max_seed_tries=MANY_EXPERTS_SEED_TRIES,
         config=dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1, head_dim=12,
                     n_routed_experts=16, num_experts_per_tok=4, n_group=1, topk_group=1, moe_intermediate_size=16,
                     n_shared_experts=2, intermediate_size=64, first_k_dense_replace=0, norm_topk_prob=True,
                     routed_scaling_factor=1.0, use_qk_norm=False, attention_bias=True, vocab_size=352,
                     rope_parameters={**ROPE_1E6, "partial_rotary_factor": 0.5}),
         cases=[(PROMPT_TEXT_B, 10), (PROMPT_UNICODE, 8)]),
    # ---- DeepSeek-V3 ------------------------------------------------------------------------
    dict(name="deepseek_v3_mla", arch="deepseek_v3", seed=16016, stored="float32", shard=None,
         config=dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                     q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=12,
                     n_routed_experts=8, num_experts_per_tok=3, n_group=4, topk_group=2, moe_intermediate_size=16,
                     n_shared_experts=1, intermediate_size=96, first_k_dense_replace=1, norm_topk_prob=True,
                     routed_scaling_factor=2.5, attention_bias=True, rope_interleave=True, vocab_size=384,
                     num_nextn_predict_layers=0, rope_parameters=ROPE_1E6),
         cases=[(PROMPT_TEXT_A, 10), (PROMPT_UNICODE, 8), (PROMPT_TEXT_C, 10)]),
    dict(name="deepseek_v3_q_proj_bf16", arch="deepseek_v3", seed=17017, stored="bfloat16", shard=None,
         hub_config=True,
         config=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                     q_lora_rank=None, kv_lora_rank=12, qk_nope_head_dim=12, qk_rope_head_dim=4, v_head_dim=8,
                     n_routed_experts=8, num_experts_per_tok=2, n_group=1, topk_group=1, moe_intermediate_size=16,
                     n_shared_experts=2, intermediate_size=64, first_k_dense_replace=0, norm_topk_prob=False,
                     routed_scaling_factor=1.0, attention_bias=False, rope_interleave=True, vocab_size=352,
                     num_nextn_predict_layers=0, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         cases=[(PROMPT_TEXT_B, 10), (PROMPT_UNICODE, 8)]),
    dict(name="deepseek_v3_fp8", arch="deepseek_v3", seed=24024, stored="bfloat16", shard=None, fp8=(32, 32),
         config=dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                     q_lora_rank=40, kv_lora_rank=24, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=12,
                     n_routed_experts=8, num_experts_per_tok=3, n_group=4, topk_group=2, moe_intermediate_size=24,
                     n_shared_experts=1, intermediate_size=96, first_k_dense_replace=1, norm_topk_prob=True,
                     routed_scaling_factor=2.5, attention_bias=False, rope_interleave=True, vocab_size=384,
                     num_nextn_predict_layers=0, rope_parameters=ROPE_1E6),
         cases=[(PROMPT_TEXT_A, 10), (PROMPT_UNICODE, 8), (PROMPT_TEXT_C, 10)]),
    dict(name="deepseek_v3_yarn", arch="deepseek_v3", seed=18018, stored="float32", shard=None,
         config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                     q_lora_rank=16, kv_lora_rank=8, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8,
                     n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1, moe_intermediate_size=16,
                     n_shared_experts=1, intermediate_size=64, first_k_dense_replace=1, norm_topk_prob=True,
                     routed_scaling_factor=1.5, attention_bias=False, rope_interleave=True, vocab_size=320,
                     num_nextn_predict_layers=0,
                     rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                      "original_max_position_embeddings": 64, "beta_fast": 32.0, "beta_slow": 1.0,
                                      "mscale": 0.707, "mscale_all_dim": 1.0}),
         cases=[(PROMPT_TEXT_A, 10), (PROMPT_UNICODE, 8)]),
    # ---- gpt-oss ------------------------------------------------------------------------------
    dict(name="gpt_oss_bf16", arch="gpt_oss", seed=19019, stored="bfloat16", shard=None,
         config=dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                     num_local_experts=8, num_experts_per_tok=2, intermediate_size=32, sliding_window=5,
                     vocab_size=384, tie_word_embeddings=False),
         cases=[(PROMPT_TEXT_A, 10), (PROMPT_UNICODE, 8), (PROMPT_TEXT_C, 10)]),
    dict(name="gpt_oss_mxfp4", arch="gpt_oss", seed=21021, stored="bfloat16", shard=None, mxfp4=True,
         config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                     num_local_experts=8, num_experts_per_tok=4, intermediate_size=64, sliding_window=5,
                     vocab_size=384),
         cases=[(PROMPT_TEXT_C, 10), (PROMPT_UNICODE, 8)]),
    dict(name="gpt_oss_clamp", arch="gpt_oss", seed=20020, stored="float32", shard=None,
         config=dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1, head_dim=12,
                     num_local_experts=6, num_experts_per_tok=3, intermediate_size=24, sliding_window=4,
                     layer_types=["full_attention", "sliding_attention", "sliding_attention"],
                     swiglu_limit=0.5, vocab_size=352,
                     rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0,
                                      "original_max_position_embeddings": 32, "beta_fast": 32.0, "beta_slow": 1.0,
                                      "truncate": True}),
         cases=[(PROMPT_TEXT_B, 10), (PROMPT_UNICODE, 10)]),
    # ---- DeepSeek-V2 ------------------------------------------------------------------------
    dict(name="deepseek_v2_greedy", arch="deepseek_v2", seed=19019, stored="float32", shard=None,
         config=dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                     q_lora_rank=20, kv_lora_rank=12, qk_nope_head_dim=8, qk_rope_head_dim=6, v_head_dim=10,
                     n_routed_experts=8, num_experts_per_tok=2, topk_method="greedy", moe_intermediate_size=16,
                     n_shared_experts=2, intermediate_size=80, first_k_dense_replace=1, norm_topk_prob=False,
                     routed_scaling_factor=2.0, attention_bias=True, vocab_size=352,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         cases=[(PROMPT_TEXT_C, 10), (PROMPT_UNICODE, 8), (PROMPT_TEXT_B, 10)]),
    dict(name="deepseek_v2_groups", arch="deepseek_v2", seed=20020, stored="float32", shard=None,
         config=dict(hidden_size=40, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2,
                     q_lora_rank=None, kv_lora_rank=10, qk_nope_head_dim=12, qk_rope_head_dim=8, v_head_dim=8,
                     n_routed_experts=12, num_experts_per_tok=3, topk_method="group_limited_greedy", n_group=4,
                     topk_group=2, moe_intermediate_size=12, n_shared_experts=1, intermediate_size=64,
                     first_k_dense_replace=1, norm_topk_prob=False, routed_scaling_factor=1.5,
                     attention_bias=False, vocab_size=320,
                     rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0,
                                      "original_max_position_embeddings": 32, "beta_fast": 32.0, "beta_slow": 1.0,
                                      "mscale": 0.707, "mscale_all_dim": 0.707}),
         cases=[(PROMPT_TEXT_A, 10), (PROMPT_UNICODE, 8), (PROMPT_TEXT_B, 10)]),
    dict(name="deepseek_v2_lite_bf16", arch="deepseek_v2", seed=21021, stored="bfloat16", shard=None,
         hub_config=True, max_seed_tries=MANY_EXPERTS_SEED_TRIES,
         config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                     q_lora_rank=None, kv_lora_rank=8, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
                     n_routed_experts=16, num_experts_per_tok=4, topk_method="greedy", moe_intermediate_size=12,
                     n_shared_experts=1, intermediate_size=64, first_k_dense_replace=0, norm_topk_prob=False,
                     routed_scaling_factor=1.0, attention_bias=False, vocab_size=320,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         cases=[(PROMPT_TEXT_C, 10), (PROMPT_UNICODE, 8)]),
    # ---- MiniMax-M2 -------------------------------------------------------------------------
    dict(name="minimax_m2_basic", arch="minimax_m2", seed=22022, stored="float32", shard=None,
         config=dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                     num_local_experts=8, num_experts_per_tok=2, intermediate_size=24, vocab_size=352,
                     rope_parameters={**ROPE_1E6, "partial_rotary_factor": 0.5}),
         cases=[(PROMPT_TEXT_A, 10), (PROMPT_UNICODE, 8), (PROMPT_TEXT_B, 10)]),
    dict(name="minimax_m2_bf16", arch="minimax_m2", seed=23023, stored="bfloat16", shard=None, hub_config=True,
         max_seed_tries=MANY_EXPERTS_SEED_TRIES,
         config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=12,
                     num_local_experts=16, num_experts_per_tok=4, intermediate_size=16, vocab_size=320,
                     rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "partial_rotary_factor": 0.5}),
         cases=[(PROMPT_TEXT_C, 10), (PROMPT_UNICODE, 8)]),
    dict(name="minimax_m2_fp8", arch="minimax_m2", seed=25025, stored="float32", shard=None, fp8=(128, 128),
         config=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                     num_local_experts=8, num_experts_per_tok=2, intermediate_size=40, vocab_size=352,
                     rope_parameters={**ROPE_1E6, "partial_rotary_factor": 0.5}),
         cases=[(PROMPT_TEXT_B, 10), (PROMPT_UNICODE, 8)]),
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

# Defaults for the byte-level families; bos/eos/pad ids are filled in from the tokenizer.
QWEN_CONFIG_DEFAULTS = dict(
    max_position_embeddings=256,
    initializer_range=0.1,
    rms_norm_eps=1e-6,
    attention_dropout=0.0,
)
GLM_CONFIG_DEFAULTS = dict(
    max_position_embeddings=256,
    initializer_range=0.1,
    rms_norm_eps=1e-5,
    attention_dropout=0.0,
)
OLMOE_CONFIG_DEFAULTS = dict(
    max_position_embeddings=256,
    initializer_range=0.1,
    rms_norm_eps=1e-5,
    attention_dropout=0.0,
)

# arch -> transformers classes, the tokenizer family and the config defaults.
ARCHS = {
    "mixtral": dict(config_cls=MixtralConfig, model_cls=MixtralForCausalLM, tokenizer="spm",
                    defaults=CONFIG_DEFAULTS),
    "qwen3_moe": dict(config_cls=Qwen3MoeConfig, model_cls=Qwen3MoeForCausalLM, tokenizer="qwen3",
                      defaults=QWEN_CONFIG_DEFAULTS),
    "qwen2_moe": dict(config_cls=Qwen2MoeConfig, model_cls=Qwen2MoeForCausalLM, tokenizer="qwen2",
                      defaults=QWEN_CONFIG_DEFAULTS),
    "olmoe": dict(config_cls=OlmoeConfig, model_cls=OlmoeForCausalLM, tokenizer="gpt_neox",
                  defaults=OLMOE_CONFIG_DEFAULTS),
    # GLM's own tokenizer is a byte-level BPE too; the Qwen3 one stands in (the model is under test).
    # AutoTokenizer maps glm4_moe to TokenizersBackend (tokenizer.json as it is), whatever tokenizer_class says.
    "glm4_moe": dict(config_cls=Glm4MoeConfig, model_cls=Glm4MoeForCausalLM, tokenizer="qwen3",
                     defaults=GLM_CONFIG_DEFAULTS, auto_tokenizer_class="TokenizersBackend"),
    "deepseek_v3": dict(config_cls=DeepseekV3Config, model_cls=DeepseekV3ForCausalLM, tokenizer="qwen3",
                        defaults=GLM_CONFIG_DEFAULTS),
    # gpt-oss ships an o200k tokenizer; the Qwen3 byte-level one stands in (the model is under test).
    # transformers 5.23 has no sdpa attention for gpt-oss (sinks): eager only.
    "gpt_oss": dict(config_cls=GptOssConfig, model_cls=GptOssForCausalLM, tokenizer="qwen3",
                    defaults=GLM_CONFIG_DEFAULTS, attentions=("eager",)),
    "deepseek_v2": dict(config_cls=DeepseekV2Config, model_cls=DeepseekV2ForCausalLM, tokenizer="qwen3",
                        defaults=GLM_CONFIG_DEFAULTS),
    "minimax_m2": dict(config_cls=MiniMaxM2Config, model_cls=MiniMaxM2ForCausalLM, tokenizer="qwen3",
                       defaults=dict(QWEN_CONFIG_DEFAULTS, router_jitter_noise=0.0),
                       auto_tokenizer_class="TokenizersBackend"),
}

# The families whose router is DeepSeek-V3's noaux_tc (sigmoid + e_score_correction_bias + groups).
NOAUX_TC = ("glm4_moe", "deepseek_v3")
# The families with DeepSeek's layout (shared experts, first_k_dense_replace dense layers, n_routed_experts).
DEEPSEEK_LAYOUT = NOAUX_TC + ("deepseek_v2",)


def arch_of(spec: dict) -> str:
    return spec.get("arch", "mixtral")


def special_token_ids(spec: dict, tokenizer) -> dict:
    """config.json bos/eos/pad ids for a byte-level family, from its tokenizer."""
    style = ARCHS[arch_of(spec)]["tokenizer"]
    eot = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    if style == "gpt_neox":
        # OLMoE: no BOS in the model config; <|endoftext|> ends and pads.
        return dict(bos_token_id=None, eos_token_id=eot, pad_token_id=eot)
    # Qwen: bos_token_id is <|endoftext|> (never added by the tokenizer), eos is <|im_end|>.
    return dict(bos_token_id=eot, eos_token_id=tokenizer.convert_tokens_to_ids(IM_END), pad_token_id=None)


def moe_layer_indices(config) -> list[int]:
    """Which decoder layers have a sparse MoE block, by each architecture's rule in transformers 5.23."""
    L = config.num_hidden_layers
    if config.model_type in ("qwen3_moe", "qwen2_moe"):
        # Qwen{2,3}MoeDecoderLayer: MoE iff layer not in mlp_only_layers and num_experts > 0 and
        # (layer_idx + 1) % decoder_sparse_step == 0; otherwise a dense MLP of intermediate_size.
        return [i for i in range(L)
                if i not in config.mlp_only_layers and config.num_experts > 0
                and (i + 1) % config.decoder_sparse_step == 0]
    if config.model_type in DEEPSEEK_LAYOUT:
        # Glm4MoeDecoderLayer, DeepseekV{2,3}DecoderLayer (moe_layer_freq is not read): MoE iff layer_idx >= first_k_dense_replace, else a dense MLP.
        return list(range(config.first_k_dense_replace, L))
    return list(range(L))  # mixtral, olmoe: every layer


class NearTie(Exception):
    pass


def make_model(spec: dict, seed: int, token_ids: dict | None = None):
    arch = ARCHS[arch_of(spec)]
    cfg = arch["config_cls"](**{**arch["defaults"], **(token_ids or {}), **spec["config"]})
    torch.manual_seed(seed)
    model = arch["model_cls"](cfg)
    # RMSNorm weights initialise to exactly 1; perturb them so a runtime that ignores them fails.
    # The final norm is scaled up (x3) so the random model's logits are less flat and greedy
    # top-1/top-2 gaps are comfortably large. (q_norm/k_norm end in "norm.weight" too.)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                scale = FINAL_NORM_SCALE if name == "model.norm.weight" else 1.0
                p.copy_(scale * (1.0 + 0.2 * torch.randn_like(p)))
        if arch_of(spec) != "mixtral":
            # Biases start at 0 and the shared-expert gate at a small random value; make both matter.
            for name, p in model.named_parameters():
                if name.endswith(".bias"):
                    p.copy_(BIAS_STD * torch.randn_like(p))
                elif name.endswith("shared_expert_gate.weight"):
                    p.copy_(SHARED_GATE_STD * torch.randn_like(p))
            # gpt-oss: the experts' biases (zero at init) and the attention sinks (N(0, 0.1)) must matter.
            for name, p in model.named_parameters():
                if name.endswith(("gate_up_proj_bias", "down_proj_bias")):
                    p.copy_(BIAS_STD * torch.randn_like(p))
                elif name.endswith("self_attn.sinks"):
                    p.copy_(SINK_STD * torch.randn_like(p))
            # GLM-4.5's correction bias is a buffer (zero at init); make it move the expert choice.
            for name, b in model.named_buffers():
                if name.endswith("e_score_correction_bias"):
                    b.copy_(CORRECTION_BIAS_STD * torch.randn_like(b))
    model.eval()
    return model


def save_model(model, spec: dict, out_dir: str) -> None:
    kwargs = {}
    if spec["shard"]:
        kwargs["max_shard_size"] = spec["shard"]
    if spec["stored"] == "bfloat16":
        model = model.to(torch.bfloat16)
        # What from_pretrained(dtype=bfloat16) keeps: the correction bias in float32
        # (_keep_in_fp32_modules_strict), beside bfloat16 weights.
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.data = b.data.float()
    model.save_pretrained(out_dir, **kwargs)


E2M1_MAGNITUDES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def quantize_mxfp4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w [..., rows, k] (nn.Linear layout, k a multiple of 32) -> (blocks [..., rows, k/32, 16] uint8,
    scales [..., rows, k/32] uint8), the way gpt-oss's checkpoints are quantized (triton_kernels'
    downcast_to_mxfp, which transformers' quantize_to_mxfp4 calls, with its default ROUND_UP scale):
    per block of 32, the scale is amax / 6 rounded up to a power of two (its exponent byte is the e8m0
    scale), each value divided by it and rounded to the nearest e2m1 value (ties to the even code);
    element 2j goes to byte j's low nibble, 2j + 1 to its high nibble (as transformers unpacks them)."""
    w = w.float()
    *prefix, rows, k = w.shape
    assert k % 32 == 0, k
    blocks = w.reshape(*prefix, rows, k // 32, 32)
    amax = blocks.abs().amax(-1)
    bits = (amax / 6.0).view(torch.int32)
    rounded = ((bits + 0x007FFFFF) & 0x7F800000)
    scale = rounded.view(torch.float32)
    exponent = (rounded >> 23).to(torch.uint8)
    q = torch.where(scale[..., None] == 0, torch.zeros_like(blocks), blocks / scale[..., None])
    grid = torch.tensor(E2M1_MAGNITUDES)
    distance = (q.abs()[..., None] - grid).abs()
    # Nearest magnitude; on a tie the even code (the lower index of a tie is even on this grid).
    best = distance.min(-1, keepdim=True).values
    index = torch.where(distance == best, torch.arange(8), 8).min(-1).values
    tie = (distance == best).sum(-1) > 1
    index = torch.where(tie & (index % 2 == 1), index + 1, index)
    code = (index | torch.where(q < 0, 8, 0)).to(torch.uint8)
    code = code.reshape(*prefix, rows, k // 32, 16, 2)
    packed = code[..., 0] | (code[..., 1] << 4)
    return packed.contiguous(), exponent.contiguous()


def write_mxfp4_experts(folder: str) -> None:
    """Replace every layer's mlp.experts.{gate_up_proj,down_proj} in model.safetensors by MXFP4
    `_blocks` and `_scales` (the Linear layout: [E, out, in/32, 16], as the released checkpoints) and
    add config.json's quantization_config, as openai/gpt-oss-20b has it."""
    from safetensors.torch import load_file, save_file
    path = os.path.join(folder, "model.safetensors")
    tensors = load_file(path)
    for name in [n for n in tensors if n.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
        # transformers holds [E, in, out]; the checkpoint stores [E, out, in] blocks.
        blocks, scales = quantize_mxfp4(tensors.pop(name).transpose(1, 2))
        tensors[name + "_blocks"], tensors[name + "_scales"] = blocks, scales
    save_file(tensors, path, metadata={"format": "pt"})
    config_path = os.path.join(folder, "config.json")
    with open(config_path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["quantization_config"] = {
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
                                   "lm_head"],
        "quant_method": "mxfp4",
    }
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def load_mxfp4_reference(folder: str):
    """The MXFP4 fixture in float32 with its experts dequantized by transformers' own
    convert_moe_packed_tensors (what from_pretrained does on a CPU; its quantizer itself needs
    accelerate, which the pinned reference environment does not have)."""
    from safetensors.torch import load_file
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    cfg = GptOssConfig.from_pretrained(folder)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    model = GptOssForCausalLM(cfg).float()
    state = {}
    for name, t in load_file(os.path.join(folder, "model.safetensors")).items():
        if name.endswith("_blocks"):
            scales = load_file(os.path.join(folder, "model.safetensors"))[name[:-len("_blocks")] + "_scales"]
            state[name[:-len("_blocks")]] = convert_moe_packed_tensors(t, scales, dtype=torch.float32)
        elif not name.endswith("_scales"):
            state[name] = t.float()
    model.load_state_dict(state, strict=True)
    model.generation_config = GenerationConfig.from_pretrained(folder)
    model.eval()
    return model


FP8_MAX = 448.0


def quantize_fp8(w: torch.Tensor, block: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """w [rows, cols] (nn.Linear layout) -> (float8_e4m3fn [rows, cols], scale_inv float32
    [ceil(rows / block_rows), ceil(cols / block_cols)]), the way DeepSeek-V3's checkpoints are quantized
    (its inference/kernel.py act_quant: s = amax / 448, y = x / s cast to e4m3): per block (partial at
    the bottom and right edges), scale_inv = amax / 448 in float32, the values w / scale_inv rounded to
    the nearest e4m3 (ties to even; clamped to +-448 first, so nothing overflows to NaN). An all-zero
    block gets scale 1 (its values are 0 whatever the scale)."""
    w = w.float()
    rows, cols = w.shape
    br, bc = block
    grid_rows, grid_cols = -(-rows // br), -(-cols // bc)
    q = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    scale_inv = torch.empty(grid_rows, grid_cols, dtype=torch.float32)
    for i in range(grid_rows):
        for j in range(grid_cols):
            part = w[i * br:(i + 1) * br, j * bc:(j + 1) * bc]
            amax = part.abs().amax()
            s = amax / FP8_MAX if amax > 0 else torch.tensor(1.0)
            scale_inv[i, j] = s
            q[i * br:(i + 1) * br, j * bc:(j + 1) * bc] = (part / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q, scale_inv


def dequantize_fp8(q: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """The weight an FP8 checkpoint means: each e4m3 value times its block's scale_inv, one float32
    product (as DeepSeek's weight_dequant and transformers' Fp8Dequantize compute it; the grid is
    ceil-divided, so edge blocks are partial)."""
    rows, cols = q.shape
    s = scale_inv.repeat_interleave(block[0], 0)[:rows].repeat_interleave(block[1], 1)[:, :cols]
    return q.to(torch.float32) * s


def is_fp8_weight(name: str, t: torch.Tensor) -> bool:
    """The tensors DeepSeek-V3 and MiniMax-M2 store in FP8: linear weights; not the embedding, lm_head,
    the routers (DeepSeek's mlp.gate, MiniMax's block_sparse_moe.gate) or any norm (all 1-D)."""
    return (t.dim() == 2 and name.endswith(".weight") and "embed_tokens" not in name and name != "lm_head.weight"
            and not name.endswith((".mlp.gate.weight", "block_sparse_moe.gate.weight")))


def write_fp8_weights(spec: dict, folder: str) -> None:
    """Replace every linear weight in model.safetensors by float8_e4m3fn and its `_scale_inv`, and add
    config.json's quantization_config as deepseek-ai/DeepSeek-V3 (or MiniMaxAI/MiniMax-M2) has it."""
    block = spec["fp8"]
    from safetensors.torch import load_file, save_file
    path = os.path.join(folder, "model.safetensors")
    tensors = load_file(path)
    for name in [n for n, t in tensors.items() if is_fp8_weight(n, t)]:
        tensors[name], tensors[name + "_scale_inv"] = quantize_fp8(tensors[name], block)
    save_file(tensors, path, metadata={"format": "pt"})
    config_path = os.path.join(folder, "config.json")
    with open(config_path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                  "weight_block_size": list(block)}
    if arch_of(spec) == "minimax_m2":
        cfg["quantization_config"].update(fmt="float8_e4m3fn",
                                          modules_to_not_convert=["gate", "e_score_correction_bias", "lm_head"])
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def load_fp8_reference(spec: dict, folder: str):
    """The FP8 fixture in float32 on its dequantized weights (dequantize_fp8; the other tensors as
    stored, upcast exactly): transformers' from_pretrained of a copy holding those float32 weights and
    config.json without quantization_config (transformers' FP8 quantizer targets GPUs, and its CPU
    dequantization needs shapes divisible by the scale grid, which DeepSeek's kv_a_proj_with_mqa
    (576 rows) is not)."""
    import tempfile
    from safetensors.torch import load_file, save_file
    tensors = load_file(os.path.join(folder, "model.safetensors"))
    state = {}
    for name, t in tensors.items():
        if name.endswith("_scale_inv"):
            continue
        state[name] = (dequantize_fp8(t, tensors[name + "_scale_inv"], spec["fp8"])
                       if t.dtype == torch.float8_e4m3fn else t.float()).contiguous()
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    del cfg["quantization_config"]
    cfg["dtype"] = "float32"
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        save_file(state, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        model = ARCHS[arch_of(spec)]["model_cls"].from_pretrained(tmp, dtype=torch.float32)
    model.generation_config = GenerationConfig.from_pretrained(folder)
    model.eval()
    return model


def hub_style_config(spec: dict, folder: str) -> None:
    """Rewrite config.json the way this family's Hub checkpoints spell it, and check that
    transformers reads it back as the same configuration.

    transformers 5.23 writes `rope_parameters` {"rope_type", "rope_theta"} (Hub: top-level
    `rope_theta` and `rope_scaling` null), Qwen3-MoE's expert count as `num_local_experts` (its
    attribute_map aliases num_experts; Hub: `num_experts`) and Qwen2-MoE's derived `layer_types`
    (Hub: absent; derived on load from use_sliding_window and max_window_layers).
    """
    cls = ARCHS[arch_of(spec)]["config_cls"]
    before = cls.from_pretrained(folder).to_dict()
    path = os.path.join(folder, "config.json")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    rope = cfg.pop("rope_parameters")
    if arch_of(spec) in ("deepseek_v3", "deepseek_v2"):
        # DeepSeek-V3's and V2's Hub config.json spells the expert count n_routed_experts.
        cfg["n_routed_experts"] = cfg.pop("num_local_experts", cfg.get("n_routed_experts"))
    if arch_of(spec) == "minimax_m2":
        # MiniMax-M2's Hub config.json gives the rotated width as rotary_dim.
        cfg["rotary_dim"] = int(rope.pop("partial_rotary_factor") * cfg["head_dim"])
    if arch_of(spec) == "glm4_moe":
        # GLM-4.5's Hub config.json has partial_rotary_factor at the top level.
        cfg["partial_rotary_factor"] = rope.pop("partial_rotary_factor")
    assert set(rope) == {"rope_type", "rope_theta"} and rope["rope_type"] == "default", rope
    cfg["rope_theta"] = rope["rope_theta"]
    cfg["rope_scaling"] = None
    if "num_local_experts" in cfg and arch_of(spec) == "qwen3_moe":
        cfg["num_experts"] = cfg.pop("num_local_experts")
    cfg.pop("layer_types", None)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    after = cls.from_pretrained(folder).to_dict()
    if arch_of(spec) == "minimax_m2":
        # The Hub key stays an attribute beside the partial_rotary_factor it became in rope_parameters.
        assert after.pop("rotary_dim") == cfg["rotary_dim"]
    if before != after:
        diff = {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
        raise AssertionError(f"Hub-style config.json reads back differently: {diff}")


def save_generation_config(spec: dict, tokenizer, folder: str) -> None:
    """Qwen: generation_config.json stops on <|im_end|> or <|endoftext|> (a list, as on the Hub)."""
    if ARCHS[arch_of(spec)]["tokenizer"] in ("qwen2", "qwen3"):
        eot, im_end = tokenizer.convert_tokens_to_ids(ENDOFTEXT), tokenizer.convert_tokens_to_ids(IM_END)
        GenerationConfig(bos_token_id=eot, eos_token_id=[im_end, eot], pad_token_id=eot).save_pretrained(folder)


def router_choice(model, position: int, logits):
    """The experts MoE layer number `position` (among the MoE layers) chooses from its router logits
    (tokens, E), and per token the gap between the scores that decided the choice.

    Softmax families: top-k of the softmax; the gap is k-th minus (k+1)-th probability. GLM-4.5
    (Glm4MoeTopkRouter, DeepSeek-V3's noaux_tc): sigmoid scores plus e_score_correction_bias choose;
    groups score the sum of their best two, topk_group groups are kept; the gap is the smaller of the
    kept/dropped group-score gap and the k-th/(k+1)-th biased-score gap among the kept experts."""
    cfg = model.config
    lg = logits.float()
    K, E = cfg.num_experts_per_tok, lg.shape[-1]
    if cfg.model_type == "minimax_m2":
        # MiniMaxM2TopKRouter: sigmoid scores plus the block's e_score_correction_bias choose the top-k.
        bias = model.model.layers[position].mlp.e_score_correction_bias.float()
        choice = lg.sigmoid() + bias
        s = torch.sort(choice, dim=-1, descending=True).values
        gap = s[:, K - 1] - s[:, K] if K < E else torch.full((lg.shape[0],), math.inf)
        return torch.topk(choice, K, dim=-1).indices, gap
    if cfg.model_type == "deepseek_v2" and cfg.topk_method == "group_limited_greedy":
        # DeepseekV2TopkRouter: softmax; a group scores its best probability; the other groups' scores
        # are set to 0 before the top-k.
        probs = torch.softmax(lg, dim=-1)
        G = cfg.n_group
        group_scores = probs.view(-1, G, E // G).max(dim=-1).values
        gap = torch.full((lg.shape[0],), math.inf)
        if cfg.topk_group < G:
            gs = torch.sort(group_scores, dim=-1, descending=True).values
            gap = gs[:, cfg.topk_group - 1] - gs[:, cfg.topk_group]
        kept = torch.zeros_like(group_scores).scatter_(1, torch.topk(group_scores, cfg.topk_group, dim=-1).indices, 1)
        mask = kept.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E).bool()
        probs = probs.masked_fill(~mask, 0.0)
        s = torch.sort(probs, dim=-1, descending=True).values
        if K < cfg.topk_group * (E // G):
            gap = torch.minimum(gap, s[:, K - 1] - s[:, K])
        return torch.topk(probs, K, dim=-1).indices, gap
    if cfg.model_type not in NOAUX_TC:
        probs = torch.softmax(lg, dim=-1)
        s = torch.sort(probs, dim=-1, descending=True).values
        gap = s[:, K - 1] - s[:, K] if K < E else torch.full((lg.shape[0],), math.inf)
        return torch.topk(probs, K, dim=-1).indices, gap
    gate = model.model.layers[moe_layer_indices(cfg)[position]].mlp.gate
    choice = lg.sigmoid() + gate.e_score_correction_bias.float()
    G = cfg.n_group
    group_scores = choice.view(-1, G, E // G).topk(2, dim=-1).values.sum(-1)
    gap = torch.full((lg.shape[0],), math.inf)
    if cfg.topk_group < G:
        gs = torch.sort(group_scores, dim=-1, descending=True).values
        gap = gs[:, cfg.topk_group - 1] - gs[:, cfg.topk_group]
    kept = torch.zeros_like(group_scores).scatter_(1, torch.topk(group_scores, cfg.topk_group, dim=-1).indices, 1)
    mask = kept.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E).bool()
    choice = choice.masked_fill(~mask, float("-inf"))
    s = torch.sort(choice, dim=-1, descending=True).values
    if K < cfg.topk_group * (E // G):
        gap = torch.minimum(gap, s[:, K - 1] - s[:, K])
    return torch.topk(choice, K, dim=-1).indices, gap


@torch.no_grad()
def check_router_choice(model) -> None:
    """router_choice must choose what each MoE layer's own router module chooses (on random rows)."""
    if model.config.model_type not in DEEPSEEK_LAYOUT + ("minimax_m2",):
        return
    torch.manual_seed(0)
    for position, layer in enumerate(moe_layer_indices(model.config)):
        mlp = model.model.layers[layer].mlp
        rows = torch.randn(64, model.config.hidden_size)
        if model.config.model_type == "minimax_m2":
            logits, _, indices = mlp.gate(rows, mlp.e_score_correction_bias)
        else:
            logits, _, indices = mlp.gate(rows)
        mine, _ = router_choice(model, position, logits)
        assert torch.equal(mine.sort(-1).values, indices.sort(-1).values), f"router_choice differs on layer {layer}"


def expert_counts(model, router_logits, rows: slice | None = None) -> list[list[int]]:
    """router_logits: per MoE layer a (tokens, E) tensor. Count top-k selections per expert."""
    E = num_experts_of(model.config)
    out = []
    for position, layer_logits in enumerate(router_logits):
        lg = layer_logits.reshape(-1, E)
        if rows is not None:
            lg = lg[rows]
        idx, _ = router_choice(model, position, lg)
        out.append(torch.bincount(idx.reshape(-1), minlength=E).tolist())
    return out


def all_layers(moe_counts: list[list[int]], moe_layers: list[int], num_layers: int) -> list[list[int]]:
    """Counts per MoE layer (transformers returns router logits for MoE layers only, in order)
    -> a list over every decoder layer, [] for a dense layer."""
    assert len(moe_counts) == len(moe_layers), (len(moe_counts), moe_layers)
    by_layer = dict(zip(moe_layers, moe_counts))
    return [by_layer.get(i, []) for i in range(num_layers)]


def router_min_gap(model, router_logits) -> float:
    g = math.inf
    for position, layer_logits in enumerate(router_logits):
        _, gap = router_choice(model, position, layer_logits.reshape(-1, num_experts_of(model.config)))
        g = min(g, float(gap.min()))
    return g


def add_counts(a, b):
    return [[x + y for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]


def num_experts_of(cfg) -> int:
    return cfg.num_local_experts if cfg.model_type in ("mixtral", "gpt_oss") + NOAUX_TC else cfg.num_experts


@torch.no_grad()
def greedy_cached(model, prompt_ids: list[int], n: int, moe_layers: list[int]):
    """Own greedy loop with the KV cache. Returns ids, raw f32 logits rows, router logits per forward."""
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
    assert len(out.router_logits) == len(moe_layers)
    return completion, rows, prefill_router, decode_router


def round7(x: float) -> float:
    return float(f"{x:.7g}")


def compute_case(model, tokenizer, prompt: str, n: int, router_gap_min: float = ROUTER_GAP_MIN) -> dict:
    cfg = model.config
    E, K = num_experts_of(cfg), cfg.num_experts_per_tok
    L = cfg.num_hidden_layers
    moe_layers = moe_layer_indices(cfg)
    prompt_ids = tokenizer(prompt)["input_ids"]
    if cfg.model_type == "mixtral":
        assert prompt_ids[0] == 1, "BOS must be added"
    else:
        assert prompt_ids == tokenizer(prompt, add_special_tokens=False)["input_ids"], "no BOS/EOS may be added"
    completion, rows, prefill_router, decode_router = greedy_cached(model, prompt_ids, n, moe_layers)

    # ---- logit gaps --------------------------------------------------------------------
    gaps = []
    for row in rows:
        top2 = torch.topk(row, 2).values
        gaps.append(float(top2[0] - top2[1]))
    min_gap = min(gaps)
    if min_gap <= LOGIT_GAP_TARGET:
        raise NearTie(f"prompt {prompt!r}: greedy top-1/top-2 gap {min_gap:.3g} <= {LOGIT_GAP_TARGET}")
    assert min_gap > LOGIT_GAP_MIN
    # generate() below masks EOS (min_new_tokens) and a padding row decodes to nothing: avoid both.
    eos = model.generation_config.eos_token_id
    stop_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    if stop_ids & set(completion):
        raise NearTie(f"prompt {prompt!r}: greedy completion hits EOS {sorted(stop_ids & set(completion))}")
    if max(completion) >= len(tokenizer):
        raise NearTie(f"prompt {prompt!r}: greedy completion picks an embedding row without a token")

    # ---- expert load from the cached forwards --------------------------------------------
    prefill = all_layers(expert_counts(model, prefill_router), moe_layers, L)
    decode = [[0] * E if i in moe_layers else [] for i in range(L)]
    for r in decode_router:
        decode = add_counts(decode, all_layers(expert_counts(model, r), moe_layers, L))
    rgap = min([router_min_gap(model, prefill_router)] + [router_min_gap(model, r) for r in decode_router])
    if rgap <= router_gap_min:
        raise NearTie(f"prompt {prompt!r}: router k-th/(k+1)-th prob gap {rgap:.3g} <= {router_gap_min}")
    P = len(prompt_ids)
    assert all(sum(prefill[i]) == P * K for i in moe_layers), prefill
    assert all(sum(decode[i]) == (n - 1) * K for i in moe_layers), decode
    assert all(prefill[i] == [] and decode[i] == [] for i in range(L) if i not in moe_layers)

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
    if all_layers(expert_counts(model, fo.router_logits, slice(0, P)), moe_layers, L) != prefill:
        raise AssertionError("no-cache forward disagrees on prefill expert load")
    if all_layers(expert_counts(model, fo.router_logits, slice(P, None)), moe_layers, L) != decode:
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


# --------------------------------------------------------------------------------------------
# Implementation and feature checks (byte-level families)
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def max_logit_diff(model, cases: list[dict]) -> float:
    """No-cache forward of every case's prompt + completion[:-1]: max |logit - recorded step logit|."""
    d = 0.0
    for c in cases:
        P = len(c["prompt_token_ids"])
        full = torch.tensor([c["prompt_token_ids"] + c["completion_token_ids"][:-1]])
        rows = model(input_ids=full, use_cache=False).logits[0, P - 1:].float()
        d = max(d, float((rows - torch.tensor(c["step_logits"])).abs().max()))
    return d


def load_variant(spec: dict, folder: str, attn: str | None = None, experts: str | None = None, **config_changes):
    """The fixture reloaded in float32, optionally with other implementations or config values."""
    arch = ARCHS[arch_of(spec)]
    cfg = arch["config_cls"].from_pretrained(folder)
    for k, v in config_changes.items():
        setattr(cfg, k, v)
    kwargs = {}
    if attn:
        kwargs["attn_implementation"] = attn
    if experts:
        kwargs["experts_implementation"] = experts
    model = arch["model_cls"].from_pretrained(folder, config=cfg, dtype=torch.float32, **kwargs)
    model.eval()
    return model


@torch.no_grad()
def load_filled(spec: dict, folder: str, suffixes: tuple[str, ...], value: float):
    """The fixture reloaded in float32 with every parameter and buffer whose name ends in one of
    `suffixes` filled with `value`."""
    model = load_variant(spec, folder)
    filled = 0
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if name.endswith(suffixes):
            t.fill_(value)
            filled += 1
    assert filled, suffixes
    return model


def check_implementations_and_features(spec: dict, folder: str, cases: list[dict]) -> dict[str, float]:
    """Eager attention and the eager expert loop must match the recorded (sdpa, grouped_mm) logits;
    switching off each feature under test must change them. Returns the measured max diffs."""
    cfg = ARCHS[arch_of(spec)]["config_cls"].from_pretrained(folder)
    attentions = ARCHS[arch_of(spec)].get("attentions", ("eager", "sdpa"))
    found: dict[str, float] = {}
    for attn in attentions:
        for experts in ("eager", "grouped_mm"):
            model = load_variant(spec, folder, attn=attn, experts=experts)
            assert (model.config._attn_implementation, model.config._experts_implementation) == (attn, experts)
            d = max_logit_diff(model, cases)
            found[f"attn {attn}, experts {experts}"] = d
            if not d <= IMPLEMENTATION_ATOL:
                raise AssertionError(f"attn_implementation={attn}, experts_implementation={experts}: logits differ by {d}")

    def must_change(what: str, model) -> None:
        d = max_logit_diff(model, cases)
        found[what] = d
        if not d > FEATURE_EFFECT_MIN:
            raise AssertionError(f"{what} changes the logits by only {d:.3g}: the fixture does not test it")

    if hasattr(cfg, "norm_topk_prob") and cfg.model_type not in ("deepseek_v2", "minimax_m2"):  # their routers do not read it
        must_change("norm_topk_prob flipped", load_variant(spec, folder, norm_topk_prob=not cfg.norm_topk_prob))
    if getattr(cfg, "layer_types", None) and "sliding_attention" in cfg.layer_types:
        for attn in attentions:
            m = load_variant(spec, folder, attn=attn, layer_types=["full_attention"] * cfg.num_hidden_layers)
            must_change(f"sliding window off ({attn})", m)
    if getattr(cfg, "qkv_bias", False) or (cfg.model_type in DEEPSEEK_LAYOUT and cfg.attention_bias):
        must_change("q/k/v biases zeroed", load_filled(spec, folder, (".bias",), 0.0))
    if getattr(cfg, "shared_expert_intermediate_size", 0):
        m = load_variant(spec, folder)
        hooks = [mod.register_forward_hook(lambda _m, _i, out: torch.full_like(out, 50.0))
                 for name, mod in m.named_modules() if name.endswith("shared_expert_gate")]
        assert hooks
        must_change("shared-expert gate ignored (sigmoid -> 1)", m)
        m2 = load_variant(spec, folder)
        for name, mod in m2.named_modules():
            if name.endswith("shared_expert"):
                mod.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
        must_change("shared expert dropped", m2)
    if getattr(cfg, "clip_qkv", None) is not None:
        must_change("clip_qkv off", load_variant(spec, folder, clip_qkv=None))
    if cfg.model_type == "glm4_moe":
        check_glm_features(spec, folder, cfg, must_change)
    if cfg.model_type in ("deepseek_v3", "deepseek_v2"):
        check_deepseek_features(spec, folder, cfg, must_change)
    if cfg.model_type == "gpt_oss":
        check_gpt_oss_features(spec, folder, cfg, must_change)
    if cfg.model_type == "minimax_m2":
        must_change("e_score_correction_bias zeroed", load_filled(spec, folder, ("e_score_correction_bias",), 0.0))
        rope = {**cfg.rope_parameters, "partial_rotary_factor": 1.0}
        must_change("RoPE on the whole head", load_variant(spec, folder, rope_parameters=rope))
    if cfg.model_type in ("qwen3_moe", "olmoe", "minimax_m2") or getattr(cfg, "use_qk_norm", False):
        must_change("q_norm/k_norm weights set to 1", load_filled(spec, folder, ("q_norm.weight", "k_norm.weight"), 1.0))
    return found


def check_glm_features(spec: dict, folder: str, cfg, must_change) -> None:
    """GLM-4.5: the correction bias, the expert groups, routed_scaling_factor, partial RoPE and the
    shared experts must each change the logits."""
    must_change("e_score_correction_bias zeroed", load_filled(spec, folder, ("e_score_correction_bias",), 0.0))
    if cfg.topk_group < cfg.n_group:
        must_change("expert groups off (n_group 1)", load_variant(spec, folder, n_group=1, topk_group=1))
    if cfg.routed_scaling_factor != 1.0:
        must_change("routed_scaling_factor 1", load_variant(spec, folder, routed_scaling_factor=1.0))
    rope = {**cfg.rope_parameters, "partial_rotary_factor": 1.0}
    must_change("RoPE on the whole head", load_variant(spec, folder, rope_parameters=rope))
    if cfg.n_shared_experts:
        m = load_variant(spec, folder)
        hooks = [mod.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
                 for name, mod in m.named_modules() if name.endswith("shared_experts")]
        assert hooks
        must_change("shared experts dropped", m)


def check_deepseek_features(spec: dict, folder: str, cfg, must_change) -> None:
    """DeepSeek-V3: the router features GLM-4.5 shares; DeepSeek-V2: its group limit; both: each part
    of multi-head latent attention (the latent and q-LoRA norms, YaRN, V3's interleaved RoPE pairing)
    and the shared experts must each change the logits."""
    if cfg.model_type == "deepseek_v3":
        must_change("e_score_correction_bias zeroed", load_filled(spec, folder, ("e_score_correction_bias",), 0.0))
        if cfg.topk_group < cfg.n_group:
            must_change("expert groups off (n_group 1)", load_variant(spec, folder, n_group=1, topk_group=1))
        must_change("rope_interleave false", load_variant(spec, folder, rope_interleave=False))
    elif cfg.topk_method == "group_limited_greedy" and cfg.topk_group < cfg.n_group:
        must_change("expert groups off (topk_method greedy)", load_variant(spec, folder, topk_method="greedy"))
    if cfg.routed_scaling_factor != 1.0:
        must_change("routed_scaling_factor 1", load_variant(spec, folder, routed_scaling_factor=1.0))
    if cfg.rope_parameters.get("rope_type") == "yarn":
        plain = {"rope_type": "default", "rope_theta": cfg.rope_parameters["rope_theta"]}
        must_change("YaRN off (default RoPE)", load_variant(spec, folder, rope_parameters=plain))
    must_change("kv_a_layernorm weights set to 1", load_filled(spec, folder, ("kv_a_layernorm.weight",), 1.0))
    if cfg.q_lora_rank is not None:
        must_change("q_a_layernorm weights set to 1", load_filled(spec, folder, ("q_a_layernorm.weight",), 1.0))
    m = load_variant(spec, folder)
    hooks = [mod.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
             for name, mod in m.named_modules() if name.endswith("shared_experts")]
    assert hooks
    must_change("shared experts dropped", m)


def check_gpt_oss_features(spec: dict, folder: str, cfg, must_change) -> None:
    """gpt-oss: the attention sinks, every bias, YaRN and the SwiGLU clamp (when it bites) must each
    change the logits."""
    must_change("attention sinks removed (-1e4)", load_filled(spec, folder, ("self_attn.sinks",), -1e4))
    must_change("q/k/v/o biases zeroed", load_filled(spec, folder, ("_proj.bias",), 0.0))
    must_change("router bias zeroed", load_filled(spec, folder, ("router.bias",), 0.0))
    must_change("expert biases zeroed", load_filled(spec, folder, ("gate_up_proj_bias", "down_proj_bias"), 0.0))
    plain = {"rope_type": "default", "rope_theta": cfg.rope_parameters["rope_theta"]}
    must_change("YaRN off (default RoPE)", load_variant(spec, folder, rope_parameters=plain))
    if cfg.swiglu_limit < 1.0:
        must_change("swiglu_limit 1e9 (no clamp)", load_variant(spec, folder, swiglu_limit=1e9))


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

def build_one(spec: dict, out_root: str) -> dict:
    folder = os.path.join(out_root, spec["name"])
    prompts = [p for p, _ in spec["cases"]]
    arch = ARCHS[arch_of(spec)]
    style = arch["tokenizer"]
    byte_level = style != "spm"
    if byte_level:
        byte_tok = build_byte_level_tokenizer(style, spec["config"]["vocab_size"], spec.get("tokenizer_padding", 0))
        token_ids = special_token_ids(spec, byte_tok)
    last_err = None
    tries = spec.get("max_seed_tries", MAX_SEED_TRIES)
    for attempt in range(tries):
        seed = spec["seed"] + attempt
        if os.path.exists(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        if byte_level:
            model = make_model(spec, seed, token_ids)
            save_model(model, spec, folder)
            del model
            if spec.get("mxfp4"):
                write_mxfp4_experts(folder)
            if spec.get("fp8"):
                write_fp8_weights(spec, folder)
            if spec.get("hub_config"):
                hub_style_config(spec, folder)
            save_generation_config(spec, byte_tok, folder)
            save_byte_level_tokenizer(byte_tok, style, folder)
            check_byte_level_tokenizer(folder, style, byte_tok, prompts, spec["config"]["vocab_size"],
                                       arch.get("auto_tokenizer_class"))
        else:
            model = make_model(spec, seed)
            save_model(model, spec, folder)
            del model
            tok = build_tokenizer(spec["config"]["vocab_size"])
            tok.save_pretrained(folder)
            check_tokenizer_roundtrip(folder, tok, prompts)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        # The reference is what a user loading the files gets, always computed in float32.
        if spec.get("mxfp4"):
            model = load_mxfp4_reference(folder)
        elif spec.get("fp8"):
            model = load_fp8_reference(spec, folder)
        else:
            model = arch["model_cls"].from_pretrained(folder, dtype=torch.float32)
        model.eval()
        assert next(model.parameters()).dtype == torch.float32
        check_router_choice(model)
        try:
            cases = [compute_case(model, tokenizer, p, n, spec.get("router_gap_min", ROUTER_GAP_MIN))
                     for p, n in spec["cases"]]
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
            **({"fp8_weight_block_size": list(spec["fp8"])} if spec.get("fp8") else {}),
            "seed": seed,
            "attn_implementation": model.config._attn_implementation,
            "generator": "Scripts/reference/model_fixtures.py",
            "min_top1_top2_logit_gap": min(c["min_top1_top2_logit_gap"] for c in cases),
            "cases": cases,
        }
        if byte_level:
            assert model.config.model_type == arch_of(spec)
            moe_layers = moe_layer_indices(model.config)
            built = [i for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "experts")]
            assert built == moe_layers, (built, moe_layers)
            # The MXFP4 and FP8 fixtures' features are those of their unquantized siblings, checked there
            # (the variants load with from_pretrained, whose quantizers target GPUs).
            found = {} if spec.get("mxfp4") or spec.get("fp8") else check_implementations_and_features(spec, folder, cases)
            print(f"  [{spec['name']}] max logit diffs: "
                  + ", ".join(f"{k} {v:.3g}" for k, v in found.items()), flush=True)
            ref.update({
                "architecture": model.config.model_type,
                "moe_layers": moe_layers,
                "experts_implementation": model.config._experts_implementation,
                "chat_cases": chat_cases(tokenizer),
                "decode_cases": decode_cases(tokenizer, style),
            })
        with open(os.path.join(folder, "reference.json"), "w") as f:
            json.dump(ref, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        return ref
    raise SystemExit(f"[{spec['name']}] no seed in {tries} tries avoided near ties: {last_err}")


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
        print(f"  {spec['name']:<22} seed {ref['seed']:<5} cases {len(ref['cases'])}  "
              f"min logit gap {ref['min_top1_top2_logit_gap']:.4g}  "
              f"{size / 1e6:.2f} MB  {time.time() - t0:.1f}s", flush=True)
    print(f"wrote {out_root} in {time.time() - t_all:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
