"""Chapter 6 (malicious users): the chapter's claims, read back from what the notebook recorded.

The test suite executes the chapter in the ``smoke`` profile (``records`` fixture, see
tests/conftest.py) and asserts ``SMOKE``. ``CPU`` holds the bands of the ``cpu`` run, the one
the book shows; they are asserted on the book's own run by ``make book``
(``test_book_run_bands``, marked ``book``; skipped elsewhere).

The claims:

* the victim is a sound BPR-MF model, and the targets start far down the lists;
* every attack injects exactly round(fraction · n_users) fake profiles;
* the attacks that give fake users genuine-looking fillers (average, bandwagon, gradient) improve
  their targets' mean rank at the largest fraction, the strongest by a large margin; the random
  attack is the weakest (against MF it can even push the targets down: reported, not hidden);
* HR@50 moves at least as much as HR@10, and the rank moves while HR@10 hardly does;
* the clean accuracy barely changes under poisoning;
* detection: precision and recall in [0, 1], better than chance (precision above the base rate)
  with high recall on the crude attacks (random, bandwagon), and weaker on the average attack,
  which imitates genuine profiles (the gradient attack, started from it, may or may not drift
  out of the normal ranges: not asserted);
  the defence's cost in NDCG@10 is small;
* every exercise's solution passes its check.
"""
from __future__ import annotations

import pytest

import advlib

NAME = "06_malicious_users"

SMOKE = {
    "profile": "smoke",
    "clean_ndcg_min": 0.25,  # 25 BPR epochs: short of the cpu model, well above popularity
    "rank_before_min": 600,  # cold and mid targets start in the bottom half of 1682 items
    "best_gain_min": 0.2,  # the strongest attack cuts the targets' mean rank by >= 20 %
    "imitating_gain_min": 0.05,  # average, bandwagon, gradient: each >= 5 % better rank
    "ndcg_drop_max": 0.03,  # poisoning barely moves the clean NDCG@10
    "crude_recall_min": 0.8,  # random and bandwagon profiles stand out
    "defence_cost_max": 0.03,  # NDCG@10 lost by removing flagged accounts and retraining
}
CPU = dict(SMOKE, profile="cpu", clean_ndcg_min=0.28)
EXERCISES = ("6.1", "6.2", "6.3", "6.4")
ATTACKS = ("random", "average", "bandwagon", "gradient")
REQUIRED = ("n_users", "n_items", "clean_ndcg", "clean_epochs", "targets_cold", "targets_mid",
            "filler_size", "hr10_before", "hr50_before", "rank_before", "rank_before_cold",
            "rank_before_mid", "poison_table", "n_fake_by_fraction", "largest_fraction",
            "best_attack", "best_rank_after", "best_hr10_after", "best_hr50_after", "best_shift",
            "best_ndcg_after", "share_pairs_up", "crossed_10", "crossed_50", "defence_table",
            "base_rate", "ndcg_defended_mean", "ndcg_cost", "hr50_best_attack", "hr50_best")


def assert_claims(rec: dict, bands: dict) -> None:
    """All of the chapter's claims for one run; ``bands`` is SMOKE or CPU."""
    missing = [name for name in REQUIRED if name not in rec]
    assert not missing, f"not recorded: {missing}"
    profile = advlib.get_profile(bands["profile"])
    n_users = rec["n_users"]

    # A sound victim, and targets that start far down the lists.
    assert rec["clean_ndcg"] >= bands["clean_ndcg_min"]
    assert len(rec["targets_cold"]) == len(rec["targets_mid"]) == profile.poison_targets
    assert len(set(rec["targets_cold"] + rec["targets_mid"])) == 2 * profile.poison_targets >= 10
    assert rec["rank_before"] >= bands["rank_before_min"]
    assert rec["rank_before_cold"] > rec["rank_before_mid"]  # cold items rank lower

    # The runs: every attack at every fraction, exactly round(f · n_users) profiles.
    table = rec["poison_table"]
    runs = {(row["attack"], row["fraction"]) for row in table}
    assert runs == {(a, f) for a in ATTACKS for f in profile.poison_fractions}
    for row in table:
        assert row["n_fake"] == round(row["fraction"] * n_users)
        for key in ("hr10", "hr50"):
            assert 0 <= row[key] <= 1
        assert row["hr10"] <= row["hr50"]
        assert abs(row["ndcg"] - rec["clean_ndcg"]) <= bands["ndcg_drop_max"]

    largest = max(profile.poison_fractions)
    at = {row["attack"]: row for row in table if row["fraction"] == largest}
    before = rec["rank_before"]
    # The imitating attacks improve their targets' mean rank; the strongest by a large margin.
    for attack in ("average", "bandwagon", "gradient"):
        assert at[attack]["mean_rank"] <= (1 - bands["imitating_gain_min"]) * before, attack
        assert at[attack]["shift"] > 0, attack
    best = min(at, key=lambda a: at[a]["mean_rank"])
    assert rec["best_attack"] == best
    assert rec["best_rank_after"] == pytest.approx(at[best]["mean_rank"])
    assert rec["best_rank_after"] <= (1 - bands["best_gain_min"]) * before
    # The random attack is the weakest: random fillers make fake users unlike genuine ones.
    assert at["random"]["mean_rank"] == max(row["mean_rank"] for row in at.values())

    # The honest finding: HR@50 moves at least as much as HR@10; HR@10 hardly moves at all
    # while most (user, target) pairs climb.
    hr10_gain = rec["best_hr10_after"] - rec["hr10_before"]
    hr50_gain = rec["best_hr50_after"] - rec["hr50_before"]
    assert hr50_gain >= hr10_gain
    assert hr50_gain > 0
    assert abs(hr10_gain) <= 0.01
    assert rec["share_pairs_up"] >= 0.6
    assert rec["crossed_10"] <= rec["crossed_50"]
    hr50_best = max(at, key=lambda a: at[a]["hr50"])
    assert at[rec["hr50_best_attack"]]["hr50"] == pytest.approx(at[hr50_best]["hr50"])
    assert rec["hr50_best"] == pytest.approx(at[hr50_best]["hr50"])
    assert rec["hr50_best"] > rec["hr50_before"]

    # Detection: scored, better than chance on the crude attacks, weaker on imitating ones.
    defence = {row["attack"]: row for row in rec["defence_table"]}
    assert set(defence) == set(ATTACKS)
    for row in defence.values():
        assert 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
        assert row["n_fake"] == round(largest * n_users)
        assert row["genuine_flagged"] <= row["flagged"]
    assert rec["base_rate"] == pytest.approx(round(largest * n_users) /
                                             (n_users + round(largest * n_users)))
    for attack in ("random", "bandwagon"):
        assert defence[attack]["precision"] > 3 * rec["base_rate"], attack
        assert defence[attack]["recall"] >= bands["crude_recall_min"], attack
    # The average attack imitates genuine profiles' statistics and slips through.
    assert defence["average"]["recall"] < min(defence["random"]["recall"],
                                              defence["bandwagon"]["recall"])
    # The cost, measured: a small loss of clean NDCG@10.
    assert rec["ndcg_cost"] == pytest.approx(rec["clean_ndcg"] - rec["ndcg_defended_mean"])
    assert rec["ndcg_cost"] <= bands["defence_cost_max"]

    # Every exercise's solution passed its check.
    for exercise in EXERCISES:
        assert rec.get("exercise_" + exercise.replace(".", "_")) is True, f"exercise {exercise}"


def test_smoke_run_supports_the_chapter_claims(rec):
    assert rec["profile"] == "smoke"
    assert_claims(rec, SMOKE)


@pytest.mark.book
def test_book_run_bands(book_records):
    """The bands of the run the book shows (cpu profile; the gpu run uses MovieLens-1M)."""
    rec = book_records[NAME]
    assert rec["profile"] in ("cpu", "gpu")
    assert_claims(rec, CPU)


def test_the_claims_can_fail(rec):
    """The checker is not a rubber stamp: an attack that does not move its targets, an HR@10
    that moves more than HR@50, a detector no better than chance or a failed exercise is
    rejected."""
    largest = max(row["fraction"] for row in rec["poison_table"])

    def with_rows(change):
        rows = [dict(row, **change(row)) if row["fraction"] == largest else row
                for row in rec["poison_table"]]
        return dict(rec, poison_table=rows)

    no_effect = with_rows(lambda row: {"mean_rank": rec["rank_before"]}
                          if row["attack"] == "gradient" else {})
    hr10_jumps = dict(rec, best_hr10_after=rec["best_hr50_after"] + 0.01)
    blind = dict(rec, defence_table=[dict(row, precision=rec["base_rate"], recall=0.1)
                                     for row in rec["defence_table"]])
    unsolved = dict(rec, exercise_6_2=False)
    for bad in (no_effect, hr10_jumps, blind, unsolved):
        with pytest.raises(AssertionError):
            assert_claims(bad, SMOKE)
