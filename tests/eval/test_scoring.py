"""Alphanumeric scoring: each normalisation rule by worked example, CER values, and properties."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtalk.eval import Score, char_error_rate, edit_distance, normalise_alphanumeric, score

# (how it was written or transcribed, the code's characters)
READINGS = [
    # written forms: separators and punctuation removed, case folded
    ("XR-4892", "XR4892"),
    ("xr 4892", "XR4892"),
    ("AB12 CDE", "AB12CDE"),  # UK plate
    ("sn: 0042-77/b.", "SN004277B"),
    # digits spoken as words
    ("four eight nine two", "4892"),
    ("zero oh seven", "007"),
    ("Niner", "9"),
    # double / triple
    ("double five", "55"),
    ("triple seven", "777"),
    ("double a", "AA"),
    ("triple x-ray", "XXX"),
    ("double 5", "55"),
    # grouped numbers
    ("forty-eight ninety-two", "4892"),
    ("forty eight ninety two", "4892"),
    ("twenty", "20"),
    ("twelve", "12"),
    ("XR forty-eight ninety-two", "XR4892"),
    # NATO alphabet, with the spellings in use
    ("x-ray romeo", "XR"),
    ("xray romeo", "XR"),
    ("X ray Romeo", "XR"),
    ("alfa alpha", "AA"),
    ("juliett juliet", "JJ"),
    ("Whiskey whisky", "WW"),
    ("X-ray Romeo dash four eight nine two", "XR4892"),
    # letters spelled one by one, spoken separators
    ("x r dash four eight nine two", "XR4892"),
    ("X R hyphen 4 minus 8", "XR48"),
    ("o oh", "O0"),  # "o" is the letter, "oh" the digit
    # unknown words are kept as their letters
    ("Passw0rd", "PASSW0RD"),
    ("Passw0rd!", "PASSW0RD"),
    ("double", "DOUBLE"),
    ("double trouble", "DOUBLETROUBLE"),
    ("four hundred", "4HUNDRED"),  # hundreds are not read: an error, not a guess
    ("the code is XR", "THECODEISXR"),
    ("", ""),
    ("- . /", ""),
]


@pytest.mark.parametrize(("text", "expected"), READINGS)
def test_normalise_alphanumeric(text: str, expected: str) -> None:
    assert normalise_alphanumeric(text) == expected


def test_every_style_of_reading_a_ticket_id_is_the_same_code() -> None:
    styles = [
        "XR-4892",
        "x r dash four eight nine two",
        "X-ray Romeo four eight nine two",
        "xray romeo 48 92",
        "X-ray Romeo, forty-eight ninety-two.",
    ]
    assert {normalise_alphanumeric(s) for s in styles} == {"XR4892"}


def test_case_sensitive_keeps_written_case_and_spoken_letters_are_uppercase() -> None:
    assert normalise_alphanumeric("Passw0rd", case_sensitive=True) == "Passw0rd"
    assert normalise_alphanumeric("x-ray romeo p a", case_sensitive=True) == "XRpa"
    assert score("Passw0rd", "passw0rd").exact
    password = score("Passw0rd", "passw0rd", case_sensitive=True)
    assert not password.exact
    assert password.cer == pytest.approx(1 / 8)


@pytest.mark.parametrize(
    ("reference", "hypothesis", "cer"),
    [
        ("ABCDE", "ABCDE", 0.0),
        ("ABCDE", "ABCDX", 0.2),  # one substitution in five
        ("ABCDE", "ABCDEF", 0.2),  # one insertion
        ("ABCDE", "ABDE", 0.2),  # one deletion
        ("AB", "BA", 1.0),  # a swap is two edits (no transposition operation)
        ("AB", "XYZW", 2.0),  # more inserted than expected: above 1
        ("ABCDE", "", 1.0),
        ("", "", 0.0),
        ("", "A", 1.0),  # empty reference: defined, not a division by zero
        ("A-B", "a b", 0.0),  # on the normalised strings
    ],
)
def test_char_error_rate_known_values(reference: str, hypothesis: str, cer: float) -> None:
    assert char_error_rate(reference, hypothesis) == pytest.approx(cer)


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("", "", 0), ("", "abc", 3), ("kitten", "sitting", 3), ("flaw", "lawn", 2), ("abc", "abc", 0)],
)
def test_edit_distance_known_values(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == distance


def test_a_mishearing_is_caught() -> None:
    result = score("XR-4892", "X R 4 8 9 3")
    assert dataclasses.replace(result, cer=0.0) == Score(
        expected="XR-4892",
        heard="X R 4 8 9 3",
        expected_normalised="XR4892",
        heard_normalised="XR4893",
        exact=False,
        cer=0.0,
    )
    assert result.cer == pytest.approx(1 / 6)


def test_a_correct_reading_in_another_style_is_exact() -> None:
    result = score("XR-4892", "X-ray Romeo four eight nine two")
    assert result.exact
    assert result.cer == 0.0
    assert result.heard_normalised == result.expected_normalised == "XR4892"


def test_score_is_frozen() -> None:
    result = score("AB", "AB")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.exact = False  # type: ignore[misc]


codes = st.text(alphabet="ABCXYZ0123456789", max_size=12)
spoken = st.lists(
    st.sampled_from(["x-ray", "romeo", "four", "oh", "double", "five", "dash", "a", "7", "Pw", " ", "-"]),
    max_size=10,
).map(" ".join)
any_text = st.one_of(codes, spoken, st.text(max_size=12))


@given(any_text)
def test_cer_of_a_text_with_itself_is_zero(text: str) -> None:
    assert char_error_rate(text, text) == 0.0
    assert score(text, text).exact


@given(any_text, any_text)
def test_cer_is_never_negative(reference: str, hypothesis: str) -> None:
    assert char_error_rate(reference, hypothesis) >= 0.0


@given(any_text, any_text)
def test_exact_if_and_only_if_cer_is_zero(expected: str, heard: str) -> None:
    result = score(expected, heard)
    assert result.exact == (result.cer == 0.0)
    assert result.exact == (result.expected_normalised == result.heard_normalised)
    assert result.cer == char_error_rate(expected, heard)


@given(st.text(max_size=12), st.text(max_size=12))
def test_edit_distance_is_symmetric_and_bounded(a: str, b: str) -> None:
    distance = edit_distance(a, b)
    assert distance == edit_distance(b, a)
    assert abs(len(a) - len(b)) <= distance <= max(len(a), len(b))
    assert (distance == 0) == (a == b)


@given(any_text)
def test_normalised_text_is_letters_and_digits_and_stable(text: str) -> None:
    once = normalise_alphanumeric(text)
    assert all(char.isalnum() for char in once)
    assert once == once.upper()
    assert normalise_alphanumeric(once) == once
