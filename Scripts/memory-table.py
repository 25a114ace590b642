#!/usr/bin/env python3
"""Memory a Switchyard cluster needs for a checkpoint, computed from its config.json.

    python3 Scripts/memory-table.py CONFIG.json [CONFIG.json ...]   (no packages needed)

For each config: the coordinator's dense part (embeddings, LM head, attention, norms, routers,
shared experts and dense FFN layers: every weight that is not a routed expert), its KV cache per
1,000 tokens (what Switchyard caches: keys and values of every layer, or for multi-head latent
attention the latent row, kv_lora_rank + qk_rope_head_dim values a token and layer), and the bytes
of one routed expert (gate, up and down projections: 3 x hidden x moe_intermediate weights) at
f32, bf16 and q8 (--quantize q8: int8 in blocks of 32 with an f32 scale, 1.125 bytes a weight).
The dense part at q8 is what the coordinator holds with --quantize q8: the q/k/v/o projections of
standard attention, the shared experts, the dense FFN layers and the LM head as q8 (each row's blocks
rounded up to an even count, 36 bytes a block), the rest in bf16 (the embedding, norms, routers, and
multi-head latent attention, which stays as stored); a tied LM head is a q8 copy beside the embedding.
For a config with an FP8 quantization_config (quant_method fp8, weight_block_size [R, C], as
DeepSeek-V3 is released) a second table gives the bytes as stored and used: every linear weight 1
byte plus an f32 scale per R x C block (ceil-divided: edge blocks are partial), the embeddings,
lm_head, routers and norms bf16.
Multi-head latent attention's dense part includes kv_b_proj a second time, split per head for the
absorbed decode (as stored for bf16 and f32, as f32 for FP8).
A checkpoint released with MXFP4 experts (quantization_config.quant_method mxfp4: gpt-oss) also gets
its experts as stored: two e2m1 values a byte and one e8m0 scale byte per block of 32, 4.25 bits a
weight, the expert biases in bf16. gpt-oss also counts its o_proj bias, the attention sinks (one
logit a head) and the router's bias in the dense part, and each expert's two biases.
Weights only: add the activations of a step (small next to these) and the process's own ~100 MB.
Scripts/memory-configs/ holds the fields of published config.json files the README's table uses.
"""
import json
import sys

GIB = 1024 ** 3
DTYPE_BYTES = {"f32": 4.0, "bf16": 2.0, "q8": 1.125}


def get(cfg, *names, default=None):
    for n in names:
        if n in cfg and cfg[n] is not None:
            return cfg[n]
    if default is not None:
        return default
    raise KeyError(f"config.json has none of {names}")


def figures(cfg):
    kind = cfg["model_type"]
    h = cfg["hidden_size"]
    layers = cfg["num_hidden_layers"]
    vocab = cfg["vocab_size"]
    heads = cfg["num_attention_heads"]
    experts = get(cfg, "num_local_experts", "num_experts", "n_routed_experts")
    top_k = cfg["num_experts_per_tok"]
    expert_ffn = get(cfg, "moe_intermediate_size", "intermediate_size")
    dense_ffn = cfg.get("intermediate_size", expert_ffn)
    shared = cfg.get("n_shared_experts") or 0

    if kind == "qwen3_moe":
        step = cfg.get("decoder_sparse_step", 1)
        moe_layers = [i for i in range(layers) if i not in cfg.get("mlp_only_layers", []) and (i + 1) % step == 0]
    elif kind in ("deepseek_v3", "glm4_moe"):
        moe_layers = list(range(cfg.get("first_k_dense_replace", 0), layers))
    else:
        moe_layers = list(range(layers))
    dense_layers = layers - len(moe_layers)

    # The linear weights of one layer's attention, [rows, columns] each (what an FP8 release stores
    # in FP8), beside the total.
    absorbed = 0
    if kind == "deepseek_v3":
        nope, rope, v = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
        q_rank, kv_rank = cfg.get("q_lora_rank"), cfg["kv_lora_rank"]
        q = (h * q_rank + q_rank + q_rank * heads * (nope + rope)) if q_rank else h * heads * (nope + rope)
        attention = q + h * (kv_rank + rope) + kv_rank + kv_rank * heads * (nope + v) + heads * v * h
        attention_matrices = ([(q_rank, h), (heads * (nope + rope), q_rank)] if q_rank
                              else [(heads * (nope + rope), h)])
        attention_matrices += [(kv_rank + rope, h), (heads * (nope + v), kv_rank), (h, heads * v)]
        kv_per_token_layer = kv_rank + rope
        # kv_b_proj held a second time, split per head for the absorbed decode (W_uk transposed, W_uv):
        # in the dense part's dtype, and f32 for an FP8 release.
        absorbed = layers * kv_rank * heads * (nope + v)
    else:
        kv_heads = cfg.get("num_key_value_heads", heads)
        d = cfg.get("head_dim") or h // heads
        attention = h * heads * d + 2 * h * kv_heads * d + heads * d * h
        attention_matrices = [(heads * d, h), (kv_heads * d, h), (kv_heads * d, h), (h, heads * d)]
        if cfg.get("attention_bias"):
            attention += heads * d + 2 * kv_heads * d
        if kind == "qwen3_moe" or cfg.get("use_qk_norm"):
            attention += 2 * d
        kv_per_token_layer = 2 * kv_heads * d
    if kind == "gpt_oss":
        attention += h + heads  # o_proj's bias and the attention sinks (one logit a head)
    per_layer = attention + 2 * h  # + the two RMSNorms
    dense = layers * per_layer
    dense += len(moe_layers) * (experts * h + shared * 3 * h * expert_ffn)  # routers, shared experts
    if kind in ("glm4_moe", "deepseek_v3", "gpt_oss"):
        dense += len(moe_layers) * experts  # the router's correction bias (gpt-oss: its bias)
    dense += dense_layers * 3 * h * dense_ffn
    dense += vocab * h * (1 if cfg.get("tie_word_embeddings") else 2) + h
    dense += absorbed
    expert = 3 * h * expert_ffn
    matrices = layers * attention_matrices
    matrices += len(moe_layers) * [(shared * expert_ffn, h), (shared * expert_ffn, h), (h, shared * expert_ffn)] * (shared > 0)
    matrices += dense_layers * [(dense_ffn, h), (dense_ffn, h), (h, dense_ffn)]
    # What --quantize q8 holds as q8 in the dense part (latent attention stays as stored).
    q8_matrices = [m for m in matrices if kind != "deepseek_v3" or m not in attention_matrices]
    q8_matrices += [(vocab, h)]
    q8_quantized = sum(r * c for r, c in q8_matrices) - (vocab * h if cfg.get("tie_word_embeddings") else 0)
    dense_q8_bytes = 2 * (dense - q8_quantized) + sum(r * (-(-(-(-c // 32)) // 2) * 2) * 36 for r, c in q8_matrices)
    expert_matrices = [(expert_ffn, h), (expert_ffn, h), (h, expert_ffn)]
    # gpt-oss experts carry biases: gate_up_proj_bias (2 x intermediate) and down_proj_bias (hidden).
    expert_bias = 2 * expert_ffn + h if kind == "gpt_oss" else 0
    mxfp4 = (cfg.get("quantization_config") or {}).get("quant_method") == "mxfp4"
    return {
        "dense_matrices": matrices, "expert_matrices": expert_matrices,
        "moe_layers": len(moe_layers), "experts": experts, "top_k": top_k, "dense_params": dense,
        "expert_params": expert + expert_bias, "expert_matrix_params": expert, "expert_bias_params": expert_bias,
        "mxfp4": mxfp4, "routed_experts_total": len(moe_layers) * experts,
        "kv_values_per_token": layers * kv_per_token_layer, "absorbed_params": absorbed,
        "dense_q8_bytes": dense_q8_bytes,
    }


def fp8_bytes(matrices, block):
    """Bytes of linear weights stored as FP8: 1 a weight plus an f32 scale per block (ceil-divided)."""
    br, bc = block
    return sum(r * c + 4 * (-(-r // br)) * (-(-c // bc)) for r, c in matrices)


def fp8_block(cfg):
    q = cfg.get("quantization_config") or {}
    return tuple(q.get("weight_block_size", (128, 128))) if q.get("quant_method") == "fp8" else None


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print("| model | dense part bf16 / q8 / f32 | KV cache per 1k tokens bf16 / f32 | one expert bf16 / q8 / f32 | "
          "routed experts (layers x experts) | all experts bf16 / q8 | one / all experts MXFP4 (as released) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
        name = cfg.get("_source", path).split(" ")[0]
        x = figures(cfg)
        kv = x["kv_values_per_token"] * 1000
        e = x["expert_params"]
        n = x["routed_experts_total"]
        print(f"| {name} | {x['dense_params'] * 2 / GIB:.2f} / {x['dense_q8_bytes'] / GIB:.2f} / {x['dense_params'] * 4 / GIB:.2f} GiB | "
              f"{kv * 2 / 2**20:.0f} / {kv * 4 / 2**20:.0f} MiB | "
              f"{e * 2 / 2**20:.1f} / {e * 1.125 / 2**20:.1f} / {e * 4 / 2**20:.1f} MiB | "
              f"{n} ({x['moe_layers']} x {x['experts']}, top-{x['top_k']}) | "
              f"{n * e * 2 / GIB:.1f} / {n * e * 1.125 / GIB:.1f} GiB | {mxfp4_text(x)} |")
    fp8 = [path for path in sys.argv[1:] if fp8_block(json.load(open(path, encoding="utf-8")))]
    if not fp8:
        return
    print()
    print("| model, FP8 as released | dense part (FP8 linear weights + bf16 rest) | KV cache per 1k tokens bf16 / f32 | "
          "one expert FP8 | all experts FP8 |")
    print("| --- | --- | --- | --- | --- |")
    for path in fp8:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
        name = cfg.get("_source", path).split(" ")[0]
        x = figures(cfg)
        block = fp8_block(cfg)
        linear = sum(r * c for r, c in x["dense_matrices"])
        held = x["dense_params"] - x["absorbed_params"]
        dense = fp8_bytes(x["dense_matrices"], block) + 2 * (held - linear) + 4 * x["absorbed_params"]
        expert = fp8_bytes(x["expert_matrices"], block)
        kv = x["kv_values_per_token"] * 1000
        n = x["routed_experts_total"]
        print(f"| {name} ({block[0]} x {block[1]} blocks) | {dense / GIB:.2f} GiB | {kv * 2 / 2**20:.0f} / {kv * 4 / 2**20:.0f} MiB | "
              f"{expert / 2**20:.2f} MiB | {n * expert / GIB:.1f} GiB |")


def mxfp4_text(x):
    """One expert and all routed experts as MXFP4 checkpoints store them, or a dash."""
    if not x["mxfp4"]:
        return "—"
    one = x["expert_matrix_params"] * 4.25 / 8 + x["expert_bias_params"] * 2
    return f"{one / 2**20:.1f} MiB / {x['routed_experts_total'] * one / GIB:.1f} GiB"


if __name__ == "__main__":
    main()
