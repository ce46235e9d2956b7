"""Korean-aware, rule-based sentence splitter (no model, no dependencies).

Punctuation drives the split, as in most Korean web and encyclopedic text: a sentence
ends after a run of `. ? ! …` (plus any closing quotes or brackets) that is followed by
whitespace, or that sits between two Hangul syllables with the space forgotten
(`기억.나중에`). A line break always ends a sentence, so a line such as `영화를 봤다`
without a period is already a sentence of its own.

Never split:
- inside numbers, decimals or versions (`3.14`, `1.5배`, `v2.0.1`): no whitespace follows
  the period;
- inside or right after quotes and brackets (`"…"`, `'…'`, `“…”`, `「…」`, `『…』`,
  `(…)`, `[…]`): a quote ending in a period usually goes on (`"…간다." 하고 떠났다`);
- inside URLs and e-mail addresses;
- after Latin abbreviations and initials (`Mr.`, `Dr.`, `U.S.`, `J. K.`);
- after a bare list number (`1. 서론` stays one sentence).
"""
import re

_SENTENCE_END = re.compile(
    r"[.?!…。？！]+[\"'”’」』)\]）》〉]*(?=\s)"  # punctuation, closers, then a space
    r"|(?<=[가-힣])[.?!…]+(?=[가-힣])"  # `좋다.정말`: the space was forgotten
)
_PROTECTED = re.compile(
    r'"[^"]*"|“[^”]*”|‘[^’]*’|「[^」]*」|『[^』]*』|\([^()]*\)|\[[^\[\]]*\]'
    r"|(?<![A-Za-z0-9])'[^']*'(?![A-Za-z0-9])"  # not an apostrophe as in don't
    r"|(?:(?:https?|ftp)://|www\.)\S*[^\s.,!?]"
    r"|(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # starts at a token start only: linear time
)
_MAY_PROTECT = re.compile(r"[\"“‘「『(\[']|://|www\.|@")
_ABBREVIATION = re.compile(
    r"(?:^|\s)(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|vs|No|e\.g|i\.e|[A-Z]|(?:[A-Za-z]\.)+[A-Za-z])$"
)
_ABBREVIATION_WINDOW = 16  # characters before a period searched for an abbreviation
_LIST_NUMBER = re.compile(r"\s*\d{1,3}\.")


def split_sentences(text):
    """Split one line of text into sentences; returns [text] when nothing ends early."""
    pieces, start = [], 0
    for cut in _cut_positions(text):
        piece = text[start:cut]
        if _LIST_NUMBER.fullmatch(piece):
            continue
        pieces.append(piece.strip())
        start = cut
    last = text[start:].strip()
    if last:
        pieces.append(last)
    return [piece for piece in pieces if piece]


def _cut_positions(text):
    """Offsets right after each sentence end that is not protected."""
    spans = None
    for match in _SENTENCE_END.finditer(text):
        cut = match.end()
        if match.group().startswith(".") and _follows_abbreviation(text, match.start()):
            continue
        if spans is None:
            spans = _protected_spans(text)
        if not any(begin < cut <= end for begin, end in spans):
            yield cut


def _follows_abbreviation(text, period):
    return _ABBREVIATION.search(text, max(0, period - _ABBREVIATION_WINDOW), period) is not None


def _protected_spans(text):
    if not _MAY_PROTECT.search(text):
        return ()
    return [match.span() for match in _PROTECTED.finditer(text)]
