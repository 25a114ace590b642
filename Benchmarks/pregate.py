"""How well the next MoE layer's router, applied to this layer's expert input, predicts the experts the
next layer picks: the premise of prefetching a worker's experts before their dispatch arrives
("pre-gating"). Runs the checkpoint in Hugging Face transformers (f32) on random prompt tokens and, for
every token and every layer L but the last, compares top-k of router(L+1) on the MoE input of layer L
with top-k of router(L+1) on the MoE input of layer L+1. Prints the fraction of the k experts predicted
and of tokens whose k experts were all predicted, beside chance (k / experts).

    Benchmarks/.venv/bin/python Benchmarks/pregate.py Benchmarks/.work/model [--tokens 256]

(Benchmarks/.venv is the transformers venv run.sh makes.) Routing only: nothing here is timed.
"""
import argparse

import torch
import transformers


def moe_block(layer):
    return getattr(layer, "block_sparse_moe", None) or layer.mlp


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a checkpoint directory (Mixtral or Qwen3-MoE)")
    parser.add_argument("--tokens", type=int, default=256, help="random prompt tokens (default 256)")
    args = parser.parse_args()

    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    config = model.config
    layers = model.model.layers
    inputs = {}
    for index, layer in enumerate(layers):
        def keep(module, positional, index=index):
            inputs[index] = positional[0].detach().reshape(-1, positional[0].shape[-1])
        moe_block(layer).register_forward_pre_hook(keep)

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(100, config.vocab_size - 100, (1, args.tokens), generator=generator)
    with torch.no_grad():
        model(ids)

    k = config.num_experts_per_tok
    experts = getattr(config, "num_local_experts", None) or config.num_experts
    hits = whole = total = 0
    for index in range(len(layers) - 1):
        gate = moe_block(layers[index + 1]).gate.weight
        predicted = (inputs[index] @ gate.T).topk(k).indices.tolist()
        actual = (inputs[index + 1] @ gate.T).topk(k).indices.tolist()
        for p, a in zip(predicted, actual):
            hits += len(set(p) & set(a))
            whole += set(p) == set(a)
            total += 1
    print(f"{args.model}: {hits / (total * k):.3f} of the next layer's experts predicted, all {k} for "
          f"{whole / total:.3f} of tokens, over {total} token-layers (chance {k / experts:.3f})")


if __name__ == "__main__":
    main()
