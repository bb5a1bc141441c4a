"""Chapter 1 (robustness concepts): the chapter's claims, read back from what the notebook
recorded.

The test suite executes the chapter in the ``smoke`` profile (``records`` fixture, see
tests/conftest.py) and asserts ``SMOKE``. ``CPU`` holds the bands of the ``cpu`` run, the one
the book shows; they are asserted on the book's own run by ``make book`` (``test_book_run_bands``, marked
``book``; skipped elsewhere).

The claims:

* the model is accurate on clean held-out digits;
* random ℓ∞ sign noise barely moves the accuracy over the whole ε grid;
* the exact worst case of the same ℓ∞ size breaks the model at a small ε (``eps_break``), where
  noise leaves the accuracy high: the gap is tens of points;
* worst-case accuracy never increases with ε and reaches (almost) zero at the end of the grid;
* the worst case moves the margins several times more than noise of the same size;
* every exercise's solution passes its check.
"""
from __future__ import annotations

import pytest

import advlib

NAME = "01_robustness_concepts"

# Every band has room for a few test images of chance variation, and none would survive a real
# regression (a worst case no stronger than noise, a model that does not learn, a curve that
# rises, an exercise check that rejects its own solution).
SMOKE = {
    "profile": "smoke",
    "clean_acc_min": 0.95,  # a pair like 6 vs 9 is easy even with ~120 training images
    "noise_flat": 0.05,  # noise accuracy stays within 5 points of clean over the whole grid
    "noise_at_break_min": 0.90,
    "gap_min": 0.30,  # noise − worst case at eps_break, in accuracy
    "eps_break_max": 0.20,  # ≈ 51 of 255 grey levels
    "worst_at_end_max": 0.10,  # worst-case accuracy at the largest ε (0.3)
    "drop_ratio_min": 3.0,  # mean worst-case margin drop / mean |noise margin change|
    "n_test_min": 50,  # so that one test image is at most 2 points of accuracy
}
CPU = {
    "profile": "cpu",
    "clean_acc_min": 0.97,
    "noise_flat": 0.03,
    "noise_at_break_min": 0.95,
    "gap_min": 0.45,
    "eps_break_max": 0.20,
    "worst_at_end_max": 0.05,
    "drop_ratio_min": 4.0,
    "n_test_min": 150,
}
EXERCISES = ("1.1", "1.2", "1.3", "1.4", "1.5")
REQUIRED = ("data_source", "n_train", "n_test", "digits", "train_acc", "clean_acc", "eps_grid",
            "worst_acc_curve", "noise_acc_curve", "eps_break", "eps_break_levels",
            "worst_acc_at_break", "noise_acc_at_break", "noise_acc_min", "margin_clean_mean",
            "worst_margin_drop", "noise_margin_change", "drop_ratio", "l1_over_l2")


def assert_claims(rec: dict, bands: dict) -> None:
    """All of the chapter's claims for one run; ``bands`` is SMOKE or CPU."""
    missing = [name for name in REQUIRED if name not in rec]
    assert not missing, f"not recorded: {missing}"
    profile = advlib.get_profile(bands["profile"])

    # The run and its data.
    grid, worst, noise = rec["eps_grid"], rec["worst_acc_curve"], rec["noise_acc_curve"]
    assert len(grid) == len(worst) == len(noise) == profile.eps_points
    assert grid[0] == 0 and all(a < b for a, b in zip(grid, grid[1:]))
    assert rec["n_test"] >= bands["n_test_min"] and rec["n_train"] > rec["n_test"]
    one_image = 1 / rec["n_test"]

    # An accurate model on clean held-out digits.
    assert rec["clean_acc"] >= bands["clean_acc_min"]
    assert rec["train_acc"] >= rec["clean_acc"] - 2 * one_image
    assert worst[0] == noise[0] == rec["clean_acc"]

    # Noise barely matters over the whole grid.
    assert min(noise) == pytest.approx(rec["noise_acc_min"])
    assert all(abs(acc - rec["clean_acc"]) <= bands["noise_flat"] for acc in noise), noise
    # Random noise need not be exactly monotone (a new ε can push a wrong image back across
    # the boundary): allow one test image per step, no more.
    assert all(b <= a + one_image + 1e-12 for a, b in zip(noise, noise[1:])), noise

    # The worst case of the same size: monotone, and it breaks the model.
    assert all(b <= a for a, b in zip(worst, worst[1:])), worst
    assert worst[-1] <= bands["worst_at_end_max"]
    first_below_half = next(eps for eps, acc in zip(grid, worst) if acc < 0.5)
    assert rec["eps_break"] == first_below_half
    assert 0 < rec["eps_break"] <= bands["eps_break_max"]
    assert rec["eps_break_levels"] == round(rec["eps_break"] * 255)
    at_break = grid.index(rec["eps_break"])
    assert rec["worst_acc_at_break"] == worst[at_break] < 0.5
    assert rec["noise_acc_at_break"] == noise[at_break] >= bands["noise_at_break_min"]
    assert rec["noise_acc_at_break"] - rec["worst_acc_at_break"] >= bands["gap_min"]

    # Why: aligned changes add up, random ones cancel.
    assert rec["worst_margin_drop"] > 0 and rec["noise_margin_change"] > 0
    assert rec["drop_ratio"] == pytest.approx(rec["worst_margin_drop"] / rec["noise_margin_change"])
    assert rec["drop_ratio"] >= bands["drop_ratio_min"]
    assert 1 < rec["l1_over_l2"] <= 28 + 1e-6  # ‖w‖₁ ≤ √784 · ‖w‖₂

    # Every exercise's solution passed its check.
    for exercise in EXERCISES:
        assert rec.get("exercise_" + exercise.replace(".", "_")) is True, f"exercise {exercise}"


def test_smoke_run_supports_the_chapter_claims(rec):
    assert rec["profile"] == "smoke"
    assert_claims(rec, SMOKE)


def test_smoke_run_used_the_offline_sample_of_real_digits(rec):
    assert rec["data_source"] == "sample"  # ADVLIB_OFFLINE=1 in tests: real digits, no download
    assert len(rec["digits"]) == 2 and rec["digits"][0] != rec["digits"][1]


@pytest.mark.book
def test_book_run_bands(book_records):
    """The bands of the run the book shows (cpu profile; the gpu run has more data)."""
    rec = book_records[NAME]
    assert rec["profile"] in ("cpu", "gpu")
    assert_claims(rec, CPU)


def test_the_claims_can_fail(rec):
    """The checker is not a rubber stamp: a run where noise hurts as much as the worst case, a
    rising worst-case curve or a failed exercise is rejected."""
    as_strong = dict(rec, noise_acc_curve=rec["worst_acc_curve"],
                     noise_acc_min=min(rec["worst_acc_curve"]),
                     noise_acc_at_break=rec["worst_acc_at_break"])
    rising = dict(rec, worst_acc_curve=rec["worst_acc_curve"][:-1] + [rec["worst_acc_curve"][-2] + 0.1])
    unsolved = dict(rec, exercise_1_3=False)
    for bad in (as_strong, rising, unsolved):
        with pytest.raises(AssertionError):
            assert_claims(bad, SMOKE)
