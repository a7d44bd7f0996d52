#!/usr/bin/env python3
"""Writes punkt/: Punkt parameters in NLTK's punkt_tab format (tokenizers/punkt_tab/english/:
abbrev_types.txt, collocations.tab, sent_starters.txt, ortho_context.tab), trained by NLTK's own
PunktTrainer on the first 1,000,000 characters of Jane Austen's novels (../shared/data/corpora/
austen.txt, public domain), and expected.json: the sentences NLTK's PunktSentenceTokenizer splits
test texts into with those parameters, as Megatron's tools/preprocess_data.py --split-sentences
does (and with --keep-newlines, its CustomLanguageVars).

NLTK's English model cannot be downloaded here (only PyPI and Debian are reachable), so the
parameters are trained; the tests check the algorithm, which is the same for any parameters. Run by
hand (needs nltk); the Swift tests read only the files.
"""
import json
import os
import re

import nltk
from nltk.tokenize.punkt import PunktLanguageVars, PunktSentenceTokenizer, PunktTrainer

HERE = os.path.dirname(os.path.abspath(__file__))
AUSTEN = os.path.join(HERE, "..", "..", "..", "shared", "data", "corpora", "austen.txt")


class CustomLanguageVars(PunktLanguageVars):
    """tools/preprocess_data.py's, for --keep-newlines."""

    _period_context_fmt = r"""
        \S*                          # some word material
        %(SentEndChars)s             # a potential sentence ending
        \s*                       #  <-- THIS is what I changed
        (?=(?P<after_tok>
            %(NonWord)s              # either other punctuation
            |
            (?P<next_tok>\S+)     #  <-- Normally you would have \s+ here
        ))"""


TEXTS = [
    "Mr. Bennet was so odd a mixture of quick parts. Mrs. Bennet replied that he had not! Would he come? She hoped so.",
    "It is a truth universally acknowledged... that a single man must want a wife.  Nobody doubted it.\n\nA new paragraph "
    "begins here. And ends (as it must.) Then another.",
    "\"I am sorry,\" said she. \"It was not meant.\" He smiled. 'Quite right.' Then J. Austen wrote on p. 3 of vol. 2. "
    "The price was 3.50 pounds. It rose to 4. Then it fell.",
    "Dr. Smith arrived at 5 p.m. on the 3rd. He left early!!! Everyone noticed -- nobody spoke. What then?! Nothing.",
    "“Curly quotes.” Are handled too. (Sent1.) Sent2. [Bracketed.] next one lower case. Caps again.",
    "Line one ends here.\nLine two starts here. Third sentence\nspans lines. Fourth.",
    "  Leading spaces. Trailing spaces.   ",
    "No sentence end at all",
    "Numbers like 1.5 and 2,000.00 stay. Initials U.S.A. and e.g. this. St. Mary's Church. Col. Forster.",
    "Ellipsis at end... And after. Dots . . . spaced. Last one.",
    "Ünïcödé têxt. Ça va? Ώρα να φύγουμε. Да. 日本語の文。English again.",
    "Tabs\tbetween. Words\there.\tAnd a form\x0cfeed. End.",
]


def main():
    with open(AUSTEN, encoding="utf-8") as f:
        training = f.read()[:1_000_000]
    trainer = PunktTrainer()
    trainer.INCLUDE_ALL_COLLOCS = True
    trainer.train(training, finalize=True)
    params = trainer.get_params()
    out_dir = os.path.join(HERE, "punkt", "tokenizers", "punkt_tab", "english")
    os.makedirs(out_dir, exist_ok=True)
    # NLTK's punkt_tab files (as save_punkt_params writes them), sorted so the fixture reproduces.
    files = {
        "abbrev_types.txt": sorted(params.abbrev_types),
        "collocations.tab": sorted("\t".join(pair) for pair in params.collocations),
        "sent_starters.txt": sorted(params.sent_starters),
        "ortho_context.tab": sorted(f"{typ}\t{flags}" for typ, flags in params.ortho_context.items()),
    }
    for name, lines in files.items():
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
    # A model on Austen, tried on Austen beyond the training text too.
    with open(AUSTEN, encoding="utf-8") as f:
        held_out = [p.strip() for p in re.split(r"\n\s*\n", f.read()[1_200_000:1_220_000]) if p.strip()][:40]
    texts = TEXTS + held_out
    plain = PunktSentenceTokenizer(params)
    keep = PunktSentenceTokenizer(params, lang_vars=CustomLanguageVars())
    cases = [dict(text=t, sentences=plain.tokenize(t), keep_newlines=keep.tokenize(t)) for t in texts]
    with open(os.path.join(HERE, "punkt", "expected.json"), "w", encoding="utf-8") as f:
        json.dump(dict(nltk=nltk.__version__, cases=cases), f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(params.abbrev_types)} abbreviations, {len(params.collocations)} collocations, "
          f"{len(params.sent_starters)} sentence starters, {len(params.ortho_context)} types; {len(cases)} texts")


if __name__ == "__main__":
    main()
