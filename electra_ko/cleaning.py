"""Cleaning rules for one line of web text: e-mails, URLs and phone numbers out, characters
outside Hangul/ASCII/common punctuation out, long repeats collapsed; and the rules that drop
a cleaned sentence. Pure functions of (text, options), used by `electra_ko.corpus`; `options`
is a `corpus.CorpusOptions`. No TensorFlow here.
"""
import functools
import re
import unicodedata

# Lookbehinds start a match only at the beginning of a token: without them a long
# letter run (base64, minified text) costs quadratic time.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
# A URL ends at whitespace, quotes or Hangul (Korean text often follows it without a
# space) and never on trailing sentence punctuation.
_URL_BODY = r"[^\s<>\"'가-힣ㄱ-ㅎㅏ-ㅣ]*[^\s<>\"'가-힣ㄱ-ㅎㅏ-ㅣ.,!?)\]]"
_URL = re.compile(
    rf"(?:(?:https?|ftp)://|www\.){_URL_BODY}"
    r"|(?<![@.A-Za-z0-9-])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:com|net|org|kr|io|me|ly)\b"
    r"(?:/[\w/.%?=&#-]*)?"
)
_PHONE = re.compile(
    r"(?<![\d-])(?:(?:\+82[-. ]?|0)(?:1[016789]|2|[3-6][1-5]|70)[-. )]?\d{3,4}[-. ]?\d{4}"
    r"|1[5-9]\d{2}-\d{4})(?![\d-])"
)
_HANGUL = "\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7a3\ud7b0-\ud7ff"
_PUNCTUATION = "…·‘’“”「」『』〈〉《》【】〔〕～！？。・–—°℃％₩※→←↑↓☆★○●◎◇◆□■△▲▽▼♡♥"
_EMOJI = "\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d"
_OUTSIDE_CHARSET = re.compile(rf"[^{_HANGUL}\x20-\x7e{_PUNCTUATION}]+")
_OUTSIDE_CHARSET_OR_EMOJI_OK = re.compile(rf"[^{_HANGUL}\x20-\x7e{_PUNCTUATION}{_EMOJI}]+")
_LETTER = re.compile(r"[^\W\d_]")


@functools.lru_cache(maxsize=None)
def _repeat_pattern(max_repeat):
    # `(.)` first and the exceptions in Python: twice as fast as a negated class in the regex.
    return re.compile(r"(.)\1{%d,}" % max_repeat)


def _collapse_repeats(text, max_repeat):
    """ASCII letters and digits are never collapsed: `1000000원`, `www` and URLs stay intact."""
    def shorten(match):
        char = match.group(1)
        if (char.isascii() and char.isalnum()) or char.isdigit() or char.isspace():
            return match.group()
        return char * max_repeat

    return _repeat_pattern(max_repeat).sub(shorten, text)


def normalize_text(text, options):
    """Apply every enabled rewriting rule to one line; may return an empty string."""
    if options.nfc and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if options.remove_emails:
        text = _EMAIL.sub(" ", text)
    if options.remove_urls:
        text = _URL.sub(" ", text)
    if options.phone != "keep":
        replacement = f" {options.phone_placeholder} " if options.phone == "mask" else " "
        text = _PHONE.sub(replacement, text)
    if options.filter_chars:
        charset = _OUTSIDE_CHARSET_OR_EMOJI_OK if options.keep_emoji else _OUTSIDE_CHARSET
        text = charset.sub(" ", text)
    if options.max_repeat:
        text = _collapse_repeats(text, options.max_repeat)
    if options.squeeze_whitespace:
        return " ".join(text.split())
    return text.strip()


def drop_reason(sentence, options):
    """Name of the rule that drops a cleaned sentence ("too_short", "no_letters"), or None."""
    if len(sentence) < options.min_chars:
        return "too_short"
    if options.drop_symbol_lines and not _LETTER.search(sentence):
        return "no_letters"
    return None
