"""Routing references for the DeepSeek family's routers, from transformers' own modules.

Writes Tests/Fixtures/routing/deepseek_routers.json: for DeepseekV2TopkRouter (greedy and
group_limited_greedy) and DeepseekV3TopkRouter (noaux_tc: sigmoid, e_score_correction_bias,
n_group/topk_group, norm_topk_prob, routed_scaling_factor), random router weights and hidden states
(fixed seeds) and the experts and weights transformers chooses per token, sorted by expert id.
Tests/ModelsTests/RouterPolicyTests.swift routes the same inputs through Router and compares.

Run with the reference venv (Scripts/make-reference-fixtures.sh makes it):
    /work/venv-ref/bin/python Scripts/reference/router_fixtures.py
"""
import json
import os

import torch
from transformers import DeepseekV2Config, DeepseekV3Config
from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2TopkRouter
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "Tests", "Fixtures", "routing", "deepseek_routers.json")


def case(name, router, hidden, params):
    with torch.no_grad():
        _, weights, indices = router(hidden)
    tokens = []
    for row_ids, row_weights in zip(indices.tolist(), weights.tolist()):
        pairs = sorted(zip(row_ids, row_weights))
        tokens.append({"experts": [p[0] for p in pairs], "weights": [p[1] for p in pairs]})
    bias = getattr(router, "e_score_correction_bias", None)
    return {
        "name": name, **params,
        "hidden": hidden.flatten().tolist(), "token_count": hidden.shape[0],
        "router_weight": router.weight.detach().flatten().tolist(),
        "choice_bias": bias.tolist() if bias is not None else None,
        "tokens": tokens,
    }


def main():
    torch.manual_seed(1515)
    hidden_size, experts, tokens = 24, 16, 12
    hidden = torch.randn(tokens, hidden_size)
    cases = []
    for method, groups, kept in (("greedy", 1, 1), ("group_limited_greedy", 4, 2)):
        config = DeepseekV2Config(hidden_size=hidden_size, num_attention_heads=4, num_key_value_heads=4, num_experts=experts, n_routed_experts=experts,
                                  num_experts_per_tok=4, topk_method=method, n_group=groups, topk_group=kept,
                                  routed_scaling_factor=1.5)
        router = DeepseekV2TopkRouter(config)
        torch.nn.init.normal_(router.weight, std=0.5)
        cases.append(case(f"v2-{method}", router, hidden, {
            "scoring": "softmax", "group_count": groups if method != "greedy" else None, "kept_groups": kept,
            "group_score": "best", "top_k": 4, "renormalize": False, "epsilon": 0.0, "scale": 1.5,
            "expert_count": experts}))
    for norm in (True, False):
        config = DeepseekV3Config(hidden_size=hidden_size, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=experts, num_local_experts=experts,
                                  num_experts_per_tok=4, n_group=4, topk_group=2, norm_topk_prob=norm,
                                  routed_scaling_factor=2.5)
        router = DeepseekV3TopkRouter(config)
        torch.nn.init.normal_(router.weight, std=0.5)
        # A bias large enough to change choices: the weights still come from the unbiased scores.
        router.e_score_correction_bias.copy_(torch.randn(experts) * 0.3)
        cases.append(case(f"v3-noaux_tc-norm{int(norm)}", router, hidden, {
            "scoring": "sigmoid", "group_count": 4, "kept_groups": 2, "group_score": "sum_of_best_two",
            "top_k": 4, "renormalize": norm, "epsilon": 1e-20, "scale": 2.5, "expert_count": experts}))
    with open(OUT, "w") as handle:
        json.dump({"transformers": __import__("transformers").__version__, "torch": torch.__version__,
                   "cases": cases}, handle)
    print(f"wrote {OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()
