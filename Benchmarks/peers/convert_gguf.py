#!/usr/bin/env python3
"""Runs llama.cpp's convert_hf_to_gguf.py (from SRC) on a checkpoint made by `switchyard make-model`.

    python convert_gguf.py SRC MODEL_DIR --outtype bf16 --outfile out.gguf

convert_hf_to_gguf.py identifies a BPE tokenizer's pre-tokenizer by hashing the tokens it gives for a
fixed text, and refuses hashes it does not know. The benchmark model's tokenizer is freshly trained,
so its hash is in no list: when the script refuses it, this wrapper says so and names the
pre-tokenizer from tokenizer.json's pre_tokenizer instead (a GPT-2-style byte-level split gives
"gpt-2"). The vocabulary itself is taken from tokenizer.json as usual. Tokenization does not matter
for the benchmark: every engine is fed the same token ids.
"""
import json
import os
import sys


def guess_pre(model_dir):
    with open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8") as f:
        pre = json.load(f).get("pre_tokenizer") or {}
    text = json.dumps(pre)
    if "ByteLevel" in text and "Split" not in text:
        return "gpt-2"
    if "\\\\p{N}{1,3}" in text or "p{N}{1,3}" in text:
        return "llama-bpe"
    return "gpt-2"


def main():
    src, model_dir, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    sys.path.insert(0, src)
    import convert_hf_to_gguf as convert

    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        # convert_hf_to_gguf.py imports sentencepiece before it looks for tokenizer.model; the
        # benchmark model has only tokenizer.json, so a stand-in lets it fall through to that.
        import types
        if os.path.exists(os.path.join(model_dir, "tokenizer.model")):
            sys.exit("convert_gguf.py: tokenizer.model needs the sentencepiece package")
        sys.modules["sentencepiece"] = types.SimpleNamespace(SentencePieceProcessor=None)

    try:
        import conversion.base as base  # newer llama.cpp: the model classes live in conversion/
    except ImportError:
        base = convert
    owners = [c for c in vars(base).values() if isinstance(c, type) and "get_vocab_base_pre" in vars(c)]

    def patch(owner):
        original = owner.get_vocab_base_pre

        def get_vocab_base_pre(self, tokenizer):
            try:
                return original(self, tokenizer)
            except NotImplementedError as error:
                pre = guess_pre(model_dir)
                print(f"convert_gguf.py: convert_hf_to_gguf.py does not know this tokenizer's pre-tokenizer hash "
                      f"({str(error).splitlines()[0][:120]}); using {pre!r} from tokenizer.json's pre_tokenizer",
                      file=sys.stderr)
                return pre

        owner.get_vocab_base_pre = get_vocab_base_pre

    for owner in owners:
        patch(owner)
    sys.argv = ["convert_hf_to_gguf.py", model_dir, *rest]
    convert.main()


if __name__ == "__main__":
    main()
