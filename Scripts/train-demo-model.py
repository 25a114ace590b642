#!/usr/bin/env python3
"""Train Switchyard's demo checkpoint: a small Qwen3-MoE (16 experts, top-2) on the King James Bible.

    python Scripts/train-demo-model.py --out Models/kjv-moe [--steps N] [--seed S]

Run through Scripts/train-demo-model.sh, which makes the venv (torch, transformers, tokenizers from
PyPI, pinned in Scripts/reference/requirements.txt) and checks that Debian's bible-kjv is installed.

The corpus is the KJV text Debian's bible-kjv-text ships, read out with its `bible` program (public
domain; plain ASCII, 31,102 verses). The model is transformers' own Qwen3MoeForCausalLM, so the
checkpoint is exactly what `from_pretrained` reads and what Switchyard's qwen3_moe loader is pinned
to (Tests/Fixtures/models/qwen3_moe_*). The tokenizer is a Qwen2-style byte-level BPE trained here
with the `tokenizers` library on the same text, with ChatML special tokens and a small ChatML
chat template. One thread (the machines this runs on are shared); training stops after --steps or
--max-minutes, and the learning rate is constant after its warm-up, so `--steps N` with the step
count a timed run reached retraces that run (same seed and versions, same kind of CPU). Writes the
checkpoint, training.json (the figures) and TRAINING.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import time

import torch
import tokenizers
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen3MoeConfig, Qwen3MoeForCausalLM

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
# Qwen2Tokenizer's pre-tokenizer split (as Tests/Fixtures/tokenizers/qwen2-bytelevel/tokenizer.json).
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# A plain ChatML template (no tools, no thinking): what Qwen's instruct checkpoints render for
# system/user/assistant turns.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
BIBLE_RANGE = "gen1:1-rev22:21"
HEADING = re.compile(r"^(?P<book>.+) (?P<chapter>\d+)$")
VERSE = re.compile(r"^\s+(?P<verse>\d+) (?P<text>.+)$")


def read_kjv(bible: str) -> list[tuple[str, int, list[str]]]:
    """(book, chapter, verses) from the `bible` program's output, one line per verse."""
    out = subprocess.run([bible, "-l100000", BIBLE_RANGE], check=True, capture_output=True, text=True).stdout
    chapters: list[tuple[str, int, list[str]]] = []
    for line in out.splitlines():
        if not line.strip():
            continue
        if m := VERSE.match(line):
            if not chapters:
                raise ValueError(f"verse before any chapter heading: {line!r}")
            chapters[-1][2].append(m["text"].strip())
        elif m := HEADING.match(line):
            chapters.append((m["book"], int(m["chapter"]), []))
        else:
            raise ValueError(f"unexpected line in the bible output: {line!r}")
    verses = sum(len(c[2]) for c in chapters)
    if verses != 31102 or len(chapters) != 1189:
        raise ValueError(f"expected the 31,102 verses in 1,189 chapters of the KJV, read {verses} in {len(chapters)}")
    return chapters


def chapter_text(verses: list[str]) -> str:
    # One verse a line; a chapter ends with a blank line. No verse numbers: the model learns prose.
    return "\n".join(verses) + "\n\n"


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    specials = [ENDOFTEXT, IM_START, IM_END]
    tok = Tokenizer(BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = BpeTrainer(vocab_size=vocab_size - len(specials), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                         show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.get_vocab_size() != vocab_size - len(specials):
        raise ValueError(f"corpus too small for {vocab_size} pieces")
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token=ENDOFTEXT, pad_token=ENDOFTEXT,
                                   clean_up_tokenization_spaces=False, model_max_length=512)


def save_tokenizer(tok: PreTrainedTokenizerFast, folder: str) -> None:
    tok.save_pretrained(folder)
    path = os.path.join(folder, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config.update({"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "unk_token": None,
                   "chat_template": CHAT_TEMPLATE})
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    for extra in ("chat_template.jinja", "special_tokens_map.json"):
        if os.path.exists(os.path.join(folder, extra)):
            os.remove(os.path.join(folder, extra))


def hub_style_config(folder: str) -> None:
    """config.json as Qwen3-MoE checkpoints on the Hub spell it (rope_theta at the top level,
    num_experts), checked to read back as the same configuration."""
    before = Qwen3MoeConfig.from_pretrained(folder).to_dict()
    path = os.path.join(folder, "config.json")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    rope = cfg.pop("rope_parameters", None)
    if rope is not None:
        assert set(rope) == {"rope_type", "rope_theta"} and rope["rope_type"] == "default", rope
        cfg["rope_theta"], cfg["rope_scaling"] = rope["rope_theta"], None
    if "num_local_experts" in cfg:
        cfg["num_experts"] = cfg.pop("num_local_experts")
    cfg.pop("layer_types", None)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    after = Qwen3MoeConfig.from_pretrained(folder).to_dict()
    if before != after:
        raise AssertionError(f"Hub-style config.json reads back differently: "
                             f"{ {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)} }")


def batches(stream: torch.Tensor, batch: int, length: int, gen: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, stream.numel() - length - 1, (batch,), generator=gen)
    return torch.stack([stream[s:s + length + 1] for s in starts.tolist()])


@torch.no_grad()
def evaluate(model, windows: torch.Tensor) -> float:
    model.eval()
    total = 0.0
    for w in windows.split(16):
        out = model(input_ids=w[:, :-1], use_cache=False)
        logits = out.logits.float()
        total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1),
                                                         reduction="sum"))
    model.train()
    return total / (windows.size(0) * (windows.size(1) - 1))


@torch.no_grad()
def greedy(model, tok, prompt: str, n: int) -> str:
    model.eval()
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                         pad_token_id=tok.pad_token_id)
    model.train()
    return tok.decode(out[0, ids.size(1):])


def write_report(out: str, figures: dict) -> None:
    """TRAINING.md beside the checkpoint, from training.json's figures."""
    a = figures["args"]
    v = figures["versions"]
    rerun = " ".join(f"--{k.replace('_', '-')} {val}" for k, val in a.items()
                     if k not in ("out", "bible", "max_minutes", "benchmark", "steps") and val is not None)
    lines = [
        "# How Models/kjv-moe was trained",
        "",
        "transformers' `Qwen3MoeForCausalLM` trained from scratch by `Scripts/train-demo-model.py` (run through",
        "`Scripts/train-demo-model.sh`) on the King James Bible, read from Debian's `bible-kjv-text` with",
        "its `bible` program (public domain). One verse a line, a blank line after each chapter, no verse",
        "numbers; every 40th chapter held out for the validation loss.",
        "",
        f"- parameters: {figures['parameters']:,} ({figures['expert_parameters']:,} in the routed experts);"
        f" {a['layers']} layers, hidden {a['hidden']}, {a['heads']} heads ({a['kv_heads']} key/value), "
        f"{a['experts']} experts of width {a['expert_ffn']}, top-{a['top_k']}, vocabulary {a['vocab']}",
        f"- corpus: {figures['train_tokens']:,} training tokens, {figures['validation_tokens']:,} validation tokens",
        f"- tokens seen: {figures['tokens_seen']:,} ({figures['tokens_seen'] / figures['train_tokens']:.2f} epochs),"
        f" batch {a['batch']} x {a['length']} tokens, {figures['curve'][-1]['step']} steps",
        f"- optimizer: AdamW (0.9, 0.95), weight decay 0.1 on matrices, lr {a['lr']} after {a['warmup']} warm-up steps"
        f" (constant), gradient clipping 1.0, load-balancing loss x {a['aux_loss']}",
        f"- time: {figures['train_minutes']} minutes of training ({figures['total_minutes']} in all), one thread"
        f" (`torch.set_num_threads(1)`) on a shared {figures['machine']} machine under heavy load from other jobs",
        f"- seed {a['seed']}; python {v['python']}, torch {v['torch']}, transformers {v['transformers']},"
        f" tokenizers {v['tokenizers']}",
        f"- command: `bash Scripts/train-demo-model.sh -- --steps {figures['curve'][-1]['step']} {rerun}`"
        " (the run itself stopped at its --max-minutes; the learning rate does not depend on the total, so"
        " this step count retraces it on the same kind of CPU)",
        "",
        "| step | tokens seen | train loss (mean since the previous row) | validation loss | load-balancing loss | minutes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in figures["curve"]:
        lines.append(f"| {r['step']} | {r['tokens']:,} | {r['train_loss']:.3f} | {r['val_loss']:.3f} | "
                     f"{r['aux_loss'] if r['aux_loss'] is not None else ''} | {r['minutes']} |")
    lines += ["", "Greedy continuations by transformers at the end of training (40 tokens):", ""]
    for prompt, text in figures["samples"].items():
        lines.append(f"- `{prompt}` → `{' '.join(text.split())}`")
    with open(os.path.join(out, "TRAINING.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--bible", default="bible", help="Debian bible-kjv's program (reads bible-kjv-text's data)")
    p.add_argument("--steps", type=int, default=100000, help="optimizer steps at most")
    p.add_argument("--max-minutes", type=float, default=None, help="stop training after this many minutes")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--experts", type=int, default=16)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--expert-ffn", type=int, default=128)
    p.add_argument("--aux-loss", type=float, default=0.01)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--report-only", action="store_true", help="rewrite OUT/TRAINING.md from OUT/training.json")
    p.add_argument("--benchmark", type=int, default=0, help="time this many steps and exit without saving")
    args = p.parse_args()

    if args.report_only:
        with open(os.path.join(args.out, "training.json"), encoding="utf-8") as f:
            write_report(args.out, json.load(f))
        return 0
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    started = time.time()

    chapters = read_kjv(args.bible)
    # Every 40th chapter is held out for the validation loss.
    train_text = "".join(chapter_text(v) for i, (_, _, v) in enumerate(chapters) if i % 40 != 7)
    val_text = "".join(chapter_text(v) for i, (_, _, v) in enumerate(chapters) if i % 40 == 7)
    tok = train_tokenizer([chapter_text(v) for i, (_, _, v) in enumerate(chapters) if i % 40 != 7], args.vocab)
    train_ids = torch.tensor(tok(train_text)["input_ids"], dtype=torch.long)
    val_ids = torch.tensor(tok(val_text)["input_ids"], dtype=torch.long)
    print(f"corpus: {len(chapters)} chapters, train {train_ids.numel()} tokens, validation {val_ids.numel()} tokens, "
          f"{len(train_text) / train_ids.numel():.2f} characters a token", flush=True)

    config = Qwen3MoeConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, head_dim=args.hidden // args.heads,
        intermediate_size=args.expert_ffn, moe_intermediate_size=args.expert_ffn, num_experts=args.experts,
        num_experts_per_tok=args.top_k, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        max_position_embeddings=512, rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
        router_aux_loss_coef=args.aux_loss, output_router_logits=False, initializer_range=0.02,
        bos_token_id=tok.convert_tokens_to_ids(ENDOFTEXT), eos_token_id=tok.convert_tokens_to_ids(ENDOFTEXT),
        pad_token_id=tok.convert_tokens_to_ids(ENDOFTEXT),
    )
    model = Qwen3MoeForCausalLM(config)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    expert_params = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
    print(f"model: {params} parameters ({expert_params} in experts)", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))

    # Linear warm-up, then constant: the run may stop at --max-minutes, and `--steps N` with the
    # step count it reached retraces the same run (no schedule depends on the total).
    def lr_at(step: int) -> float:
        return args.lr * min(1.0, (step + 1) / args.warmup)

    gen = torch.Generator().manual_seed(args.seed)
    val_gen = torch.Generator().manual_seed(args.seed + 1)
    val_windows = batches(val_ids, 16, args.length, val_gen)
    curve = []
    steps = args.benchmark or args.steps
    window_loss, window_n = 0.0, 0
    train_started = time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        w = batches(train_ids, args.batch, args.length, gen)
        out = model(input_ids=w[:, :-1], output_router_logits=True, use_cache=False)
        logits = out.logits.float()
        lm_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1))
        loss = lm_loss + args.aux_loss * out.aux_loss if out.aux_loss is not None else lm_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        window_loss += float(lm_loss.detach())
        window_n += 1
        done = step + 1
        out_of_time = args.max_minutes is not None and time.time() - train_started > args.max_minutes * 60
        if args.benchmark:
            print(f"step {done}: {float(lm_loss):.3f}, {(time.time() - train_started) / done:.3f} s a step", flush=True)
            continue
        if done % args.eval_every == 0 or done == steps or done == 1 or out_of_time:
            val = evaluate(model, val_windows)
            row = {"step": done, "tokens": done * args.batch * args.length, "train_loss": round(window_loss / window_n, 4),
                   "val_loss": round(val, 4), "aux_loss": round(float(out.aux_loss), 4) if out.aux_loss is not None else None,
                   "lr": round(lr_at(step), 6), "minutes": round((time.time() - train_started) / 60, 1)}
            curve.append(row)
            print(json.dumps(row), flush=True)
            window_loss, window_n = 0.0, 0
        if out_of_time:
            steps = done
            break
    if args.benchmark:
        return 0
    train_minutes = (time.time() - train_started) / 60

    os.makedirs(args.out, exist_ok=True)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=[tok.convert_tokens_to_ids(ENDOFTEXT), tok.convert_tokens_to_ids(IM_END)],
        pad_token_id=config.pad_token_id)
    model.config.output_router_logits = False
    model.save_pretrained(args.out)
    hub_style_config(args.out)
    save_tokenizer(tok, args.out)

    samples = {prompt: greedy(model, tok, prompt, 40) for prompt in
               ["In the beginning", "And the LORD said unto Moses,", "Blessed are the"]}
    figures = {
        "curve": curve, "samples": samples, "parameters": params, "expert_parameters": expert_params,
        "train_tokens": int(train_ids.numel()), "validation_tokens": int(val_ids.numel()),
        "tokens_seen": steps * args.batch * args.length, "train_minutes": round(train_minutes, 1),
        "total_minutes": round((time.time() - started) / 60, 1), "args": vars(args),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
        "machine": platform.machine(), "processor": platform.processor(),
    }
    with open(os.path.join(args.out, "training.json"), "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=2)
        f.write("\n")
    write_report(args.out, figures)
    print(json.dumps(samples, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
