"""Scoring of alphanumeric answers: what was expected against what was heard or read back.

Codes (licence plates, ticket IDs such as ``XR-4892``, serial numbers, Wi-Fi passwords) are read
aloud in several styles, and a transcript writes the same code in many ways: "XR-4892", "x r dash
four eight nine two", "X-ray Romeo 48 92". ``normalise_alphanumeric`` turns each of them into the
code's characters, so that exact match and character error rate measure mishearing, not spelling
style. The rules are part of what a score means; they are listed in its docstring and are the same
for the expected answer and for what was heard.
"""

from __future__ import annotations

import dataclasses
import re

__all__ = ["Score", "char_error_rate", "edit_distance", "normalise_alphanumeric", "score"]

_DIGIT_WORDS: dict[str, str] = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "niner": "9",  # radio-telephony nine
}

# Read in groups ("forty-eight ninety-two"): a tens word alone is its two digits, and a tens word
# followed by a digit word is the two-digit number ("forty eight" -> "48").
_TEENS_WORDS: dict[str, str] = {
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
}
_TENS_WORDS: dict[str, str] = {
    "twenty": "2",
    "thirty": "3",
    "forty": "4",
    "fifty": "5",
    "sixty": "6",
    "seventy": "7",
    "eighty": "8",
    "ninety": "9",
}

# NATO / ICAO spelling alphabet, with the spellings people and transcribers use.
_NATO_WORDS: dict[str, str] = {
    "alfa": "A",
    "alpha": "A",
    "bravo": "B",
    "charlie": "C",
    "delta": "D",
    "echo": "E",
    "foxtrot": "F",
    "golf": "G",
    "hotel": "H",
    "india": "I",
    "juliett": "J",
    "juliet": "J",
    "kilo": "K",
    "lima": "L",
    "mike": "M",
    "november": "N",
    "oscar": "O",
    "papa": "P",
    "quebec": "Q",
    "romeo": "R",
    "sierra": "S",
    "tango": "T",
    "uniform": "U",
    "victor": "V",
    "whiskey": "W",
    "whisky": "W",
    "xray": "X",
    "yankee": "Y",
    "zulu": "Z",
}

# Two-word spellings: "x-ray" and "x ray" arrive as the words "x", "ray".
_NATO_PAIRS: dict[tuple[str, str], str] = {("x", "ray"): "X"}

_REPEAT_WORDS: dict[str, int] = {"double": 2, "triple": 3}

# Spoken separators; written punctuation is dropped by the tokeniser already.
_SEPARATOR_WORDS = frozenset({"dash", "hyphen", "minus"})

# Runs of letters or digits (any script); everything else (spaces, punctuation, "_") separates.
_WORD = re.compile(r"[^\W_]+")


def normalise_alphanumeric(text: str, *, case_sensitive: bool = False) -> str:
    """Return the code's characters in ``text``: letters and digits only, no separators.

    The text is split into words at anything that is not a letter or digit (spaces, "-", ".",
    "_", ...), which is thereby removed. Each word is then read, case-insensitively, by these rules
    in this order:

    1. A spelling-alphabet word is its letter: "x-ray romeo" -> "XR". Accepted: the NATO alphabet
       with "alfa"/"alpha", "juliett"/"juliet", "whiskey"/"whisky", and "xray", "x-ray", "x ray".
    2. A digit word is its digit: "four eight nine two" -> "4892"; "zero" and "oh" -> "0"
       ("o" alone is the letter O); "niner" -> "9".
    3. Grouped numbers: "ten" .. "nineteen" are their two digits; "twenty" .. "ninety" are their
       two digits ("forty" -> "40"), or, followed by a digit word from one to nine, the two-digit
       number ("forty eight", "forty-eight" -> "48"). Hundreds and thousands are not read: "four
       hundred" stays "4HUNDRED", so such a reading scores as an error rather than being guessed.
    4. "double" and "triple" followed by a word that rules 1-3 make one character of, or by a
       single written character, repeat it: "double five" -> "55", "triple x-ray" -> "XXX",
       "double a" -> "AA". Anywhere else they are ordinary words (rule 6).
    5. The spoken separators "dash", "hyphen" and "minus" are removed.
    6. Any other word is kept as written, letters and digits alike: single letters as spelled
       ("x r 4" -> "XR4"), digits ("48 92" -> "4892"), and unknown words as their letters
       ("Passw0rd" -> "PASSW0RD"). Words are never dropped, so the text must be the answer
       alone: "the code is XR" normalises to "THECODEISXR".

    Letters are uppercased unless ``case_sensitive`` is true, in which case characters written in
    the text keep their case ("Passw0rd" stays "Passw0rd") and letters from spelling-alphabet
    words, which speech gives no case to, are uppercase. Transcripts do not carry case reliably,
    so scoring is case-insensitive by default even for passwords.
    """
    words = _WORD.findall(text)
    out: list[str] = []
    i = 0
    while i < len(words):
        chars, used = _read_word(words, i, case_sensitive)
        if chars is None:
            lowered = words[i].casefold()
            repeat = _REPEAT_WORDS.get(lowered)
            if repeat is not None and i + 1 < len(words):
                next_chars, next_used = _read_word(words, i + 1, case_sensitive)
                if next_chars is None and len(words[i + 1]) == 1:
                    next_chars, next_used = _written(words[i + 1], case_sensitive), 1
                if next_chars is not None and len(next_chars) == 1:
                    out.append(next_chars * repeat)
                    i += 1 + next_used
                    continue
            if lowered in _SEPARATOR_WORDS:
                i += 1
                continue
            chars, used = _written(words[i], case_sensitive), 1
        out.append(chars)
        i += used
    return "".join(out)


def _read_word(words: list[str], i: int, case_sensitive: bool) -> tuple[str | None, int]:
    """Rules 1-3 at ``words[i]``: the characters spoken and how many words they took, or None."""
    word = words[i].casefold()
    following = words[i + 1].casefold() if i + 1 < len(words) else None
    if following is not None and (word, following) in _NATO_PAIRS:
        return _NATO_PAIRS[word, following], 2
    if word in _NATO_WORDS:
        return _NATO_WORDS[word], 1
    if word in _DIGIT_WORDS:
        return _DIGIT_WORDS[word], 1
    if word in _TEENS_WORDS:
        return _TEENS_WORDS[word], 1
    if word in _TENS_WORDS:
        unit = _DIGIT_WORDS.get(following) if following is not None else None
        if unit is not None and unit != "0":
            return _TENS_WORDS[word] + unit, 2
        return _TENS_WORDS[word] + "0", 1
    return None, 0


def _written(word: str, case_sensitive: bool) -> str:
    return word if case_sensitive else word.upper()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest single-character insertions, deletions and substitutions
    that turn ``a`` into ``b``. Symmetric; O(len(a) * len(b)) time, fine for codes."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(
                min(
                    previous[j] + 1,  # delete char_a
                    current[j - 1] + 1,  # insert char_b
                    previous[j - 1] + (char_a != char_b),  # substitute, or keep if equal
                )
            )
        previous = current
    return previous[-1]


def char_error_rate(reference: str, hypothesis: str, *, case_sensitive: bool = False) -> float:
    """Character error rate of ``hypothesis`` against ``reference``, both normalised first.

    It is ``edit_distance / len(reference)`` on the normalised strings: 0.0 for a perfect match,
    0.2 for one wrong character in five; it exceeds 1.0 when more characters are inserted than the
    reference has. A reference that normalises to nothing gives 0.0 if the hypothesis does too,
    and 1.0 otherwise (anything heard is wrong, without dividing by zero).
    """
    ref = normalise_alphanumeric(reference, case_sensitive=case_sensitive)
    hyp = normalise_alphanumeric(hypothesis, case_sensitive=case_sensitive)
    return _cer(ref, hyp)


def _cer(ref: str, hyp: str) -> float:
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


@dataclasses.dataclass(frozen=True, slots=True)
class Score:
    """One expected code against what was heard (a transcription or the model's read-back)."""

    expected: str
    heard: str
    expected_normalised: str
    heard_normalised: str
    exact: bool
    cer: float


def score(expected: str, heard: str, *, case_sensitive: bool = False) -> Score:
    """Score ``heard`` against ``expected``: exact match and CER after ``normalise_alphanumeric``.

    ``exact`` is true exactly when the normalised strings are equal, which is when ``cer`` is 0.
    """
    expected_normalised = normalise_alphanumeric(expected, case_sensitive=case_sensitive)
    heard_normalised = normalise_alphanumeric(heard, case_sensitive=case_sensitive)
    return Score(
        expected=expected,
        heard=heard,
        expected_normalised=expected_normalised,
        heard_normalised=heard_normalised,
        exact=expected_normalised == heard_normalised,
        cer=_cer(expected_normalised, heard_normalised),
    )
