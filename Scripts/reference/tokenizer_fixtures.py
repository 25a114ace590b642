#!/usr/bin/env python3
"""Builds small reference tokenizers and records Hugging Face encodings for the Swift tests.

Usage:
    tokenizer_fixtures.py [OUTPUT_DIR] [--switchyard DIR]

OUTPUT_DIR defaults to Tests/Fixtures/tokenizers of the repository holding this script. Each fixture is a directory holding
tokenizer.json, tokenizer_config.json (as `save_pretrained` writes them) and cases.json: for every
test string, the ids that `AutoTokenizer.from_pretrained(dir)(text)` returns with and without
special tokens, and `decode` with and without `skip_special_tokens`.

`--switchyard DIR` (default OUTPUT_DIR/switchyard-trained, if it exists) names a directory holding
the tokenizer produced by the Swift `TokenizerTrainer`; only cases.json is (re)written there.

`--extra-cases` leaves every existing file alone and (re)writes only, in each fixture directory:
- decode_cases.json: token sequences given as bytes and tokens (byte-fallback runs and byte-level
  bytes that are not valid UTF-8 among them) with their ids and `decode` with and without
  `skip_special_tokens`;
- chat_cases.json (where a chat template is paired with the fixture below): conversations with
  `apply_chat_template(messages, chat_template=..., tokenize=False)` and `tokenize=True` ids.

Nothing is downloaded: every tokenizer is trained here on an inline corpus.
Needs `tokenizers` and `transformers` (5.x).
"""
import json
import os
import sys
from collections.abc import Mapping

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Mixture-of-Experts models route every token to a few experts.",
    "A router picks the top-k experts; their outputs are combined with routing weights.",
    "def forward(self, x):\n    return self.experts[idx](x) * weight\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "let tokens = tokenizer.encode(\"Hello, world!\")",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 1234 3.14159 2026-11-23",
    "Café, naïve, résumé, façade, Zürich, São Paulo, Ærøskøbing.",
    "Привет, мир! Γειά σου κόσμε. שלום עולם. مرحبا بالعالم.",
    "日本語のテキスト、中文文本、한국어 텍스트.",
    "Emoji: 😀 👍🏽 👩‍💻 🇫🇷 ❤️",
    "    indented line\n\ttabbed line\r\nwindows line\n\nblank above",
    "She said: 'it's fine', they're sure we'll go, I'd say you've won and I'm done.",
    "hello hello hello world world the the the of of and and to to in in",
    "Switchyard distributes experts across workers; the coordinator dispatches and combines.",
]

CASES = [
    "",
    "Hello world",
    "Hello  world",
    " leading space",
    "   three leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "multiple     inner     spaces",
    "\ttab\tseparated\t",
    "line one\nline two",
    "para one\n\npara two",
    "crlf\r\nline",
    "\n",
    " ",
    "Café",
    "Cafe\u0301",
    "naïve résumé",
    "nai\u0308ve re\u0301sume\u0301",
    "日本語のテキスト",
    "中文文本 and English",
    "한국어",
    "😀",
    "👍🏽 thumbs",
    "👩‍💻 coder",
    "🇫🇷🇩🇪",
    "Numbers 1234567890 and 3.14",
    "def f(x):\n    return x**2  # square\n",
    "if (a && b) { return c || d; }",
    "She's here, they're sure, we'll see, I'd go, you've won, I'm done, it'll be.",
    "SHE'S LOUD",
    "a<s>b",
    "<s>",
    "</s>",
    "text</s>",
    "<s> spaced <s>",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "x<|endoftext|>y",
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
    "ꙮ𓀀𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "\u00a0non-breaking\u2003em-space",
    "tokens ▁ with ▁ metaspace",
    "Ġ and Ċ look like byte-level",
    "ﬁ ligature ① circled ｆｕｌｌ",
    "mixed\u200bzero\u200bwidth",
    "The quick brown fox jumps over the lazy dog.",
    # Added-token options (lstrip/rstrip/single_word/normalized) and the edge pipelines.
    "[MASK]",
    "a   [MASK]   b",
    "<sep>   x<sep>",
    "hello world",
    "ahello hello_ hello. HELLO",
    "Ɐ and ɐ",
    "1234-5678, ok; yes! end.",
    "ＦＵＬＬ-width ﬁne",
    "  <|x|>  spaced  <|x|>",
    # Regressions found by fuzzing against tokenizers: single_word sees the text before an earlier
    # added token and counts combining marks as word characters; NFD keeps a decomposed first
    # character at original offset 0 (so Metaspace "first" still prepends after a split).
    "İhello",
    "Ɐhello hello",
    "ñ ",
    "ñ{",
    # Digits splits on Unicode categories Nd/Nl/No only: 幺 has a Unihan numeric value but is a letter.
    "1幺2 ⅻ ② ΣΑΣ",
    # A byte-order mark inside text (Foundation's JSONSerialization drops it; JSONDecoder keeps it) and
    # whitespace that regex engines may classify differently.
    "\ufeffbom\ufeff \x85next\u2028line\u2029para\u3000\u1680\u180e\x0b\x0c\x1c end",
]

FIXTURES = [
    "o200k-harmony",
    "sp-metaspace",
    "sp-legacy",
    "mixtral-llama-class",
    "qwen2-bytelevel",
    "gpt2-bytelevel",
    "edge-split-digits",
    "edge-metaspace-first",
    "llama3-bytelevel",
    "llama-class-default",
]


def random_cases(count, seed=20261123):
    """Seeded random mixes of the awkward pieces above: whitespace runs, marks, emoji, special tokens."""
    import random

    rng = random.Random(seed)
    pieces = list("abcXYZ019 \t\n\r.,;:!?'\"-_()[]{}<>|/\\#") + [
        "'s", "'LL", "\r\n", "\n\n", "  ", "\u00a0", "\u2003", "\u200b", "é", "e\u0301", "n\u0303", "ß", "İ",
        "ﬁ", "①", "日本", "한", "😀", "👍🏽", "👩‍💻", "🇫🇷", "\U0001F99C", "ꙮ", "𝔘", "<s>", "</s>", "<unk>",
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "[MASK]", "<sep>", "hello", "Ɐ", "<|x|>", "▁", "Ġ",
        "1234", "3.14", "the", " world",
    ]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(count)]


CASES += random_cases(40)

SPECIAL_EXTRA = ["<|im_start|>", "<|im_end|>"]


def train_bpe(vocab_size, pre_tokenizer, normalizer, initial_alphabet=None, special=None):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special or [],
        initial_alphabet=initial_alphabet or [],
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    return json.loads(tokenizer.to_str())["model"]


def sentencepiece_style_model():
    """A BPE trained on "▁"-marked words, then laid out like Llama: <unk> <s> </s>, 256 byte tokens, pieces."""
    trained = train_bpe(
        vocab_size=260,
        pre_tokenizer=pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        normalizer=None,
    )
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for piece, _ in sorted(trained["vocab"].items(), key=lambda item: item[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    return vocab, merges


def byte_level_model():
    trained = train_bpe(
        vocab_size=500,
        pre_tokenizer=pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        normalizer=normalizers.NFC(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    return trained["vocab"], merges


def save(tokenizer, directory, config_updates, **fast_kwargs):
    os.makedirs(directory, exist_ok=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **fast_kwargs)
    fast.save_pretrained(directory)
    config_path = os.path.join(directory, "tokenizer_config.json")
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    config.update(config_updates)
    with open(config_path, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    # Keep the fixtures small: tokenizer.json without indentation (Hugging Face reads it the same).
    tokenizer_path = os.path.join(directory, "tokenizer.json")
    with open(tokenizer_path, encoding="utf-8") as handle:
        tokenizer_json = json.load(handle)
    with open(tokenizer_path, "w", encoding="utf-8") as handle:
        json.dump(tokenizer_json, handle, ensure_ascii=False, separators=(",", ":"))
        handle.write("\n")
    for extra in ("special_tokens_map.json", "chat_template.jinja"):
        path = os.path.join(directory, extra)
        if os.path.exists(path):
            os.remove(path)


def llama_tokenizer(normalizer, pre_tokenizer, decoder):
    vocab, merges = sentencepiece_style_model()
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoder
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>"] + SPECIAL_EXTRA]
    )
    tokenizer.add_tokens([AddedToken("<think>", special=False, normalized=False)])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return tokenizer


LLAMA_DECODER = decoders.Sequence(
    [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
)
LEGACY_NORMALIZER = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
LLAMA_SPECIALS = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def build_fixtures(output):
    # Metaspace pre-tokenizer (prepend_scheme "first"), loaded as-is (generic backend class).
    save(
        llama_tokenizer(None, pre_tokenizers.Metaspace("▁", prepend_scheme="first", split=False), decoders.Metaspace("▁", prepend_scheme="first", split=False)),
        os.path.join(output, "sp-metaspace"),
        {"tokenizer_class": "TokenizersBackend"},
        **LLAMA_SPECIALS,
    )
    # The legacy Llama layout (Prepend + Replace normalizer, no pre-tokenizer), loaded as-is, BOS and EOS.
    save(
        llama_tokenizer(LEGACY_NORMALIZER, None, LLAMA_DECODER),
        os.path.join(output, "sp-legacy"),
        {"tokenizer_class": "TokenizersBackend", "add_bos_token": True, "add_eos_token": True},
        **LLAMA_SPECIALS,
    )
    # The same tokenizer.json as a Mixtral checkpoint ships it: transformers 5 rebuilds the pipeline
    # from the LlamaTokenizer class (Metaspace, prepend "always" because legacy is true).
    save(
        llama_tokenizer(LEGACY_NORMALIZER, None, LLAMA_DECODER),
        os.path.join(output, "mixtral-llama-class"),
        {"tokenizer_class": "LlamaTokenizer", "legacy": True, "add_bos_token": True, "add_eos_token": False},
        **LLAMA_SPECIALS,
    )

    # Qwen2-style byte-level BPE.
    vocab, merges = byte_level_model()
    vocab = dict(vocab)
    qwen = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=False))
    qwen.normalizer = normalizers.NFC()
    qwen.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
                ),
                behavior="isolated",
                invert=False,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    qwen.decoder = decoders.ByteLevel()
    qwen.post_processor = processors.ByteLevel(trim_offsets=False)
    qwen.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]]
    )
    qwen.add_tokens([AddedToken("<think>", special=False, normalized=False)])
    save(
        qwen,
        os.path.join(output, "qwen2-bytelevel"),
        {"tokenizer_class": "Qwen2Tokenizer"},
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )

    # GPT-2-style: ByteLevel with its own regex and a prefix space, individual digits, no post-processor,
    # and Llama-3's ignore_merges (a word that is itself in the vocabulary is one token).
    gpt2 = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    gpt2.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)]
    )
    gpt2.decoder = decoders.ByteLevel()
    gpt2.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    save(
        gpt2,
        os.path.join(output, "gpt2-bytelevel"),
        {"tokenizer_class": "TokenizersBackend"},
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
    )


def build_edge_fixtures(output):
    """Less common components, loaded as-is: they pin down Split behaviours, Digits, added-token options."""
    vocab, merges = sentencepiece_style_model()
    edge = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    edge.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex("[0-9]{4,}"), "#")]
    )
    edge.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("-", behavior="removed"),
            pre_tokenizers.Split(Regex("[,.;:!?]"), behavior="merged_with_previous"),
            pre_tokenizers.Digits(individual_digits=False),
            pre_tokenizers.Metaspace("▁", prepend_scheme="always", split=True),
        ]
    )
    edge.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 2, 0)]
    )
    edge.add_special_tokens(
        [
            AddedToken("<unk>", special=True, normalized=False),
            AddedToken("<s>", special=True, normalized=False),
            AddedToken("</s>", special=True, normalized=False),
            AddedToken("[MASK]", special=True, normalized=False, lstrip=True),
            AddedToken("<sep>", special=True, normalized=False, rstrip=True),
        ]
    )
    edge.add_tokens(
        [AddedToken("hello", special=False, normalized=True, single_word=True), AddedToken("Ɐ", special=False, normalized=True)]
    )
    edge.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B", special_tokens=[("<s>", 1), ("</s>", 2)]),
        ]
    )
    save(edge, os.path.join(output, "edge-split-digits"), {"tokenizer_class": "TokenizersBackend"}, **LLAMA_SPECIALS)

    first = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=False, byte_fallback=False))
    first.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Strip(left=True, right=True)])
    first.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("[a-z]+"), behavior="contiguous", invert=True),
            pre_tokenizers.Metaspace("▁", prepend_scheme="first", split=True),
        ]
    )
    first.decoder = decoders.Metaspace("▁", prepend_scheme="first", split=True)
    first.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>", "<|x|>"]])
    save(first, os.path.join(output, "edge-metaspace-first"), {"tokenizer_class": "TokenizersBackend"}, **LLAMA_SPECIALS)


# tiktoken's o200k_base / o200k_harmony word pattern (tiktoken_ext/openai_public.py), which gpt-oss's
# tokenizer.json splits with (transformers' GptOssConverter: Split isolated, then ByteLevel without regex).
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# gpt-oss's special tokens in id order (199998 ... 200018 in the released vocabulary).
HARMONY_SPECIALS = [
    "<|startoftext|>", "<|endoftext|>", "<|reserved_200000|>", "<|reserved_200001|>", "<|return|>", "<|constrain|>",
    "<|reserved_200004|>", "<|channel|>", "<|start|>", "<|end|>", "<|message|>", "<|reserved_200009|>",
    "<|reserved_200010|>", "<|reserved_200011|>", "<|call|>", "<|reserved_200013|>", "<|reserved_200014|>",
    "<|reserved_200015|>", "<|reserved_200016|>", "<|reserved_200017|>", "<|endofprompt|>",
]

# Texts that tell the o200k pattern's branches apart: case runs and contractions (the optional
# case-insensitive suffix, ſ and K folding), digit groups of three, `/` and newlines after punctuation,
# marks, CJK, emoji, whitespace runs; and the harmony tokens inside text.
O200K_CASES = [
    "HELLOWorld helloWORLD HeLLo CamelCaseWord XMLHttpRequest iPhone",
    "I'M SURE YOU'LL SEE THEY'RE DONE, it'S fine, we'D go, it'\u017f, WE'VE, I'\u212a",
    "don't DON'T Don't do'nt 'quoted' rock'n'roll o'clock",
    "1 12 123 1234 12345 1234567 3.14159 1,000,000 \u0663\u0664\u0665\u0666 \u216b\u2169",
    "a/b/c path/to/file.txt http://example.com/x?y=1 //comment\n/* c */\r\n",
    "x = (a+b)/2;\n\nreturn x;\n",
    "line\n\n\n  indented\t\ttabs  \n   ",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u039a\u0395\u03a6\u0391\u039b\u0391\u0399\u0391 \u041a\u0438\u0440\u0438\u043b\u043b\u0438\u0446\u0430 \u0422\u0415\u041a\u0421\u0422 \u01c4ungla \u01c5emal \u01c6ep",
    "\u4e2d\u6587\u6587\u672c\uff1a\u4f60\u597d\uff0c\u4e16\u754c\uff01\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e \u0915\u093f\u093c\u0924\u093e\u092c e\u0301t\u00e9 A\u030a",
    "\U0001F600\U0001F603 \U0001F469\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 \U0001F3F3\ufe0f\u200d\U0001F308 1\ufe0f\u20e3 a\U0001F600b",
    "<|start|>assistant<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final<|message|>Hi!<|return|>",
    "<|startoftext|>text<|endoftext|> <|call|><|constrain|>json<|endofprompt|>",
    "   ",
    "\n\n",
    "trailing whitespace   \n",
]

EXTRA_CASES = {
    "o200k-harmony": O200K_CASES,
    "switchyard-harmony": O200K_CASES,
}


def build_o200k_harmony(output):
    """gpt-oss's tokenizer.json shape (o200k_harmony as GptOssConverter writes it), trained small."""
    trained = train_bpe(
        vocab_size=700,
        pre_tokenizer=pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(O200K_PATTERN), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        ),
        normalizer=None,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    harmony = Tokenizer(models.BPE(vocab=trained["vocab"], merges=merges, fuse_unk=False))
    harmony.model.ignore_merges = True
    harmony.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(O200K_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    harmony.decoder = decoders.ByteLevel()
    # After the trained vocabulary, in gpt-oss's order, as the released vocabulary ends in them.
    harmony.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in HARMONY_SPECIALS])
    harmony.post_processor = processors.ByteLevel(trim_offsets=False)
    save(
        harmony,
        os.path.join(output, "o200k-harmony"),
        {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False},
        bos_token="<|startoftext|>",
        eos_token="<|return|>",
        pad_token="<|endoftext|>",
    )


def build_llama3_style(output):
    """Llama-3 layout: Split with \\p{N}{1,3}, ByteLevel, ignore_merges, and a BOS added by a Sequence post-processor."""
    vocab, merges = byte_level_model()
    vocab = dict(vocab)
    llama3 = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    llama3.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
                ),
                behavior="isolated",
                invert=False,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    llama3.decoder = decoders.ByteLevel()
    llama3.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]]
    )
    bos = llama3.token_to_id("<|begin_of_text|>")
    llama3.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", bos)],
            ),
        ]
    )
    save(
        llama3,
        os.path.join(output, "llama3-bytelevel"),
        {"tokenizer_class": "PreTrainedTokenizerFast"},
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
    )
    # A Mistral-style directory: tokenizer_class LlamaTokenizerFast with no "legacy" key, so transformers 5
    # rebuilds Metaspace with prepend_scheme "first" (its default legacy=False) over a legacy tokenizer.json.
    save(
        llama_tokenizer(LEGACY_NORMALIZER, None, LLAMA_DECODER),
        os.path.join(output, "llama-class-default"),
        {"tokenizer_class": "LlamaTokenizerFast"},
        **LLAMA_SPECIALS,
    )


def record_cases(directory):
    tokenizer = AutoTokenizer.from_pretrained(directory)
    cases = []
    for text in CASES + EXTRA_CASES.get(os.path.basename(directory), []):
        with_special = tokenizer(text)["input_ids"]
        without_special = tokenizer(text, add_special_tokens=False)["input_ids"]
        cases.append(
            {
                "text": text,
                "ids": with_special,
                "ids_without_special_tokens": without_special,
                "decoded": tokenizer.decode(with_special, skip_special_tokens=False),
                "decoded_skipping_special_tokens": tokenizer.decode(with_special, skip_special_tokens=True),
            }
        )
    record = {
        "generated_by": "Scripts/reference/tokenizer_fixtures.py",
        "transformers_class": type(tokenizer).__name__,
        "vocabulary_size": len(tokenizer.get_vocab()),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "cases": cases,
    }
    # One case per line: small, and a diff shows which cases changed.
    header = json.dumps({key: value for key, value in record.items() if key != "cases"}, ensure_ascii=False)[:-1]
    lines = [json.dumps(case, ensure_ascii=False, separators=(",", ":")) for case in cases]
    with open(os.path.join(directory, "cases.json"), "w", encoding="utf-8") as handle:
        handle.write(header + ', "cases": [\n' + ",\n".join(lines) + "\n]}\n")


# Decode-only cases: an int is a byte (the fixture's "<0xAB>" byte-fallback token, or else its
# byte-level stand-in character), a str is a token as it is; "{eos}" is the fixture's eos_token.
# A case whose tokens a fixture lacks is left out for that fixture.
DECODE_CASES = [
    ["b", 0x41],
    ["b", 0x41, 0xE2],
    ["b", 0x41, 0xE2, 0x82, 0xAC],
    ["b", 0xE2, 0x82, 0x41],
    ["b", 0x41, 0xFF, 0x42, "b"],
    ["b", 0x41, 0x42, "b", 0x43, 0x80],
    ["b", 0xF0, 0x9F, 0xA6, 0x9C, 0x61],
    ["b", 0x61, 0xF0, 0x9F, 0xA6, "b"],
    ["b", 0x41, "{eos}", 0xE2, "b"],
    [0x41, 0xE2],
    [0x20, 0x41, 0xC3],
    [0xE2, 0x82],
    # Unicode 16 Table 3-8: one U+FFFD per maximal subpart under String::from_utf8_lossy.
    [0x61, 0xF1, 0x80, 0x80, 0xE1, 0x80, 0xC2, 0x62, 0x80, 0x63, 0x80, 0xBF, 0x64],
    [0xF0, 0x9F, 0x98, 0x78],
    [0xE0, 0x80, 0x41],
    [0xED, 0xA0, 0x80],
    [0xF4, 0x90, 0x80, 0x80],
    [0xC0, 0xAF, 0x41],
    [0xF5, 0x41, 0xFF],
]


def bytes_to_unicode():
    """GPT-2's byte-level stand-in characters, as tokenizers' ByteLevel uses them."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    mapping = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def record_decode_cases(directory):
    tokenizer = AutoTokenizer.from_pretrained(directory)
    vocab = tokenizer.get_vocab()
    stand_ins = bytes_to_unicode()

    def token_of(piece):
        if isinstance(piece, int):
            fallback = f"<0x{piece:02X}>"
            return fallback if fallback in vocab else stand_ins[piece]
        return tokenizer.eos_token if piece == "{eos}" else piece

    cases = []
    for pieces in DECODE_CASES:
        tokens = [token_of(piece) for piece in pieces]
        if not all(token in vocab for token in tokens):
            continue
        ids = [vocab[token] for token in tokens]
        cases.append(
            {
                "tokens": tokens,
                "ids": ids,
                "decoded": tokenizer.decode(ids, skip_special_tokens=False),
                "decoded_skipping_special_tokens": tokenizer.decode(ids, skip_special_tokens=True),
            }
        )
    write_cases(os.path.join(directory, "decode_cases.json"), {"generated_by": GENERATED_BY}, cases)


# Fixture directory -> the chat template (a file under Tests/Fixtures/chat_templates) it is paired with.
CHAT_TEMPLATES = {
    "mixtral-llama-class": "mixtral-8x7b-instruct",
    "llama-class-default": "mixtral-8x7b-instruct-legacy",
    "sp-legacy": "mixtral-8x7b-instruct",
    "llama3-bytelevel": "llama3-instruct",
    "qwen2-bytelevel": "qwen2-moe-instruct",
    "o200k-harmony": "gpt-oss",
    "switchyard-harmony": "gpt-oss",
}

CHAT_CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [
        {"role": "user", "content": "Which experts?"},
        {"role": "assistant", "content": "Two of eight, chosen by the router."},
        {"role": "user", "content": "Café 🦜, naïve <s> text"},
    ],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  spaced  "}],
]


# Per fixture, further conversations with apply_chat_template keyword arguments (chat_template_kwargs).
HARMONY_CHATS = [
    (
        [{"role": "system", "content": "You are a concise assistant."}, {"role": "user", "content": "Café 🦜: 12345?"}],
        {"reasoning_effort": "high"},
    ),
    (
        [
            {"role": "user", "content": "Which experts?"},
            {"role": "assistant", "content": "Two of eight, chosen by the router."},
            {"role": "user", "content": "And then?\n\n  Next line."},
        ],
        {"reasoning_effort": "low", "model_identity": "You are a test model."},
    ),
]

CHAT_EXTRA = {"o200k-harmony": HARMONY_CHATS, "switchyard-harmony": HARMONY_CHATS}


def record_chat_cases(directory, template_name, templates_directory):
    with open(os.path.join(templates_directory, template_name + ".json"), encoding="utf-8") as handle:
        recorded = json.load(handle)
    template = recorded["template"]
    # Templates that print the date (gpt-oss) are rendered at the chat-template fixture's frozen time.
    now = recorded.get("now")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from chat_template_fixtures import frozen_now

    tokenizer = AutoTokenizer.from_pretrained(directory)
    cases = []
    plan = [(messages, {}) for messages in CHAT_CONVERSATIONS] + CHAT_EXTRA.get(os.path.basename(directory), [])
    for messages, kwargs in plan:
        for add_generation_prompt in (True, False):
            with frozen_now(now):
                try:
                    rendered = tokenizer.apply_chat_template(
                        messages, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt,
                        **kwargs
                    )
                except Exception:  # the template refuses this conversation (e.g. a system role)
                    continue
                encoded = tokenizer.apply_chat_template(
                    messages, chat_template=template, tokenize=True, add_generation_prompt=add_generation_prompt,
                    **kwargs
                )
            ids = encoded["input_ids"] if isinstance(encoded, Mapping) else encoded
            case = {"messages": messages, "add_generation_prompt": add_generation_prompt}
            if kwargs:
                case["chat_template_kwargs"] = kwargs
            case.update({"rendered": rendered, "ids": list(ids)})
            cases.append(case)
    header = {"generated_by": GENERATED_BY, "chat_template": template_name, "template": template}
    if now is not None:
        header["now"] = now
    write_cases(os.path.join(directory, "chat_cases.json"), header, cases)


GENERATED_BY = "Scripts/reference/tokenizer_fixtures.py --extra-cases"


def write_cases(path, header, cases):
    """One case per line, as cases.json."""
    head = json.dumps(header, ensure_ascii=False)[:-1]
    lines = [json.dumps(case, ensure_ascii=False, separators=(",", ":")) for case in cases]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(head + ', "cases": [\n' + ",\n".join(lines) + "\n]}\n")


def record_extra_cases(output):
    templates_directory = os.path.join(os.path.dirname(output), "chat_templates")
    for name in FIXTURES + ["switchyard-trained", "switchyard-harmony"]:
        directory = os.path.join(output, name)
        if not os.path.exists(os.path.join(directory, "tokenizer.json")):
            continue
        record_decode_cases(directory)
        if name in CHAT_TEMPLATES:
            record_chat_cases(directory, CHAT_TEMPLATES[name], templates_directory)


def main(argv):
    repository = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    output = os.path.join(repository, "Tests", "Fixtures", "tokenizers")
    switchyard = None
    extra_only = False
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--switchyard":
            switchyard = args.pop(0)
        elif arg == "--extra-cases":
            extra_only = True
        else:
            output = arg
    if extra_only:
        record_extra_cases(output)
        return
    build_fixtures(output)
    build_edge_fixtures(output)
    build_llama3_style(output)
    build_o200k_harmony(output)
    for name in FIXTURES:
        record_cases(os.path.join(output, name))
    switchyard = switchyard or os.path.join(output, "switchyard-trained")
    if os.path.exists(os.path.join(switchyard, "tokenizer.json")):
        # Written by the Swift TokenizerTrainer (see TokenizerTrainerTests); only its cases are recorded here.
        record_cases(switchyard)
    else:
        print(f"note: {switchyard}/tokenizer.json not found; run the Swift tests once to write it", file=sys.stderr)
    # The Swift TokenizerTrainer.harmonyBPE's gpt-oss-shaped tokenizer (make-model --arch gpt_oss), likewise.
    harmony = os.path.join(output, "switchyard-harmony")
    if os.path.exists(os.path.join(harmony, "tokenizer.json")):
        record_cases(harmony)
    record_extra_cases(output)


if __name__ == "__main__":
    main(sys.argv[1:])
