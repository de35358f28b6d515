"""Label-typo checks shared by `conceptlens score` and `conceptlens fit`."""

from __future__ import annotations

import pytest

from conceptlens._label_check import check_labels
from conceptlens.exceptions import DataError

LABELS = ["nevus"] * 5 + ["melanoma"] * 4 + ["seborrheic_keratosis"] * 3


def test_clean_labels_pass():
    check_labels(LABELS)
    check_labels(LABELS, known=["nevus", "melanoma", "seborrheic_keratosis", "bcc"])


def test_rare_label_names_its_closest_class():
    with pytest.raises(DataError, match=r"'nevsu'.*1 training row.*did you mean 'nevus'"):
        check_labels([*LABELS, "nevsu"])


def test_count_is_over_the_counted_rows():
    # seen twice overall, but once in training
    with pytest.raises(DataError, match=r"'melanoma' .* seen in 1 training row"):
        check_labels(LABELS, counted=["nevus", "melanoma"] + ["seborrheic_keratosis", "nevus"] * 2)


def test_undeclared_label_names_the_bank_class():
    with pytest.raises(DataError, match=r"not one of the bank's classes.*'seborrheic_keratosis'"):
        check_labels(
            [*LABELS[:9], *["seborrheic_keratos"] * 3],
            known=["nevus", "melanoma", "seborrheic_keratosis"],
        )


def test_accept_lets_a_label_through():
    check_labels([*LABELS, "nevsu"], accept=["nevsu"])
    check_labels(LABELS, known=["nevus", "melanoma"], accept=["seborrheic_keratosis"])
    with pytest.raises(DataError, match="--label-ok nevsu"):
        check_labels([*LABELS, "nevsu"], option="--label-ok")


@pytest.mark.parametrize(
    ("extra", "known"),
    [
        (["Melanoma"] * 4, None),  # common enough to pass the count check
        (["melanoma "] * 4, None),
        (["ｍｅｌａｎｏｍａ"] * 4, None),  # full-width
        (["Melanoma"] * 4, ["nevus", "melanoma", "seborrheic_keratosis"]),
    ],
)
def test_labels_differing_only_in_case_or_spacing_are_refused(extra, known):
    with pytest.raises(DataError, match=r"'melanoma' and .* differ only in case, spacing"):
        check_labels([*LABELS, *extra], known=known)
    check_labels([*LABELS, *extra], known=known, accept=[extra[0]])


def test_suggested_option_is_shell_quoted():
    with pytest.raises(DataError, match=r"--accept-label 'nevus x' to keep"):
        check_labels([*LABELS, "nevus x"])


@pytest.mark.parametrize("missing", ["", " ", None, float("nan")])
def test_missing_labels_are_named_as_missing(missing):
    """An empty label (a NaN after a netCDF round trip) was 'not one of the bank's classes;
    did you mean ...? pass --accept-label '' to keep it as a class'."""
    with pytest.raises(DataError, match=r"1 row\(s\) in the labels have no label .*position 3"):
        check_labels([*LABELS[:3], missing, *LABELS[3:]], known=["nevus", "melanoma"])
