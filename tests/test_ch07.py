"""Chapter 7 (large-model recommenders I: a pretrained text encoder): the chapter's claims, read
back from what the notebook recorded.

The test suite executes the chapter in the ``smoke`` profile (``records`` fixture, see
tests/conftest.py) and asserts ``SMOKE``. ``CPU`` holds the bands of the ``cpu`` run, the one the
book shows; they are asserted on the book's own run by ``make book`` (``test_book_run_bands``,
marked ``book``; skipped elsewhere).

The claims:

* the sentence vectors behave as the model card says: unit length, related titles closer;
* the hybrid is about as accurate as MF overall, the content tower much less; on cold items (no
  training interaction) the hybrid beats MF; the long-tail verdict the prose glues matches the
  numbers;
* the title-editing attack raises every target's score and the mean exposure, unconstrained more
  than constrained to genre words; the transfer attack from a surrogate lifts exposure too; the
  hybrid is far less exposed to the same edits;
* adversarial training in the text-embedding space reduces the attack's gain, at a clean cost; the
  verdict on a control (the same epochs of plain BPR) matches its numbers;
* the edit check flags few held-out benign edits; an attacker bounded by its threshold is never
  flagged and (cpu) still lifts exposure;
* every exercise's solution passes its check.

One target of the issue is not met by the book's run and is kept, visibly, as a strict xfail: on
the long tail (items with at most 10 training interactions, ranked among themselves) the hybrid
does not beat ID-only MF (see the chapter's section on where text helps).
"""
from __future__ import annotations

import pytest

import advlib

NAME = "07_large_model_recommenders"

SMOKE = {
    "profile": "smoke",
    "mf_ndcg_min": 0.25,  # 25 epochs: close to converged on MovieLens-100K
    "hybrid_over_mf_min": 0.85,  # hybrid NDCG@10 / MF's, all items
    "cold_gain_min": 0.15,  # hybrid HR@10 - MF HR@10 among the cold items
    "free_after_min": 0.05,  # mean exposure after the unconstrained white-box attack
    "transfer_after_min": 0.03,
    "defended_gain_ratio_max": 0.9,  # defended model's exposure gain / undefended one's
    "clean_cost_max": 0.5,
    "benign_flag_rate_max": 0.15,
}
CPU = {
    "profile": "cpu",
    "mf_ndcg_min": 0.29,
    "hybrid_over_mf_min": 0.9,
    "cold_gain_min": 0.3,
    "free_after_min": 0.2,  # issue: "substantially" (reference 0.00 -> ~0.40 with 3 words)
    "transfer_after_min": 0.15,
    "defended_gain_ratio_max": 0.5,
    "clean_cost_max": 0.3,
    "benign_flag_rate_max": 0.10,
}
CPU_ONLY = {
    "exposure_cut_min": 0.5,  # issue: adversarial training at least halves post-attack exposure
    "detector_recall_min": 0.4,
}
EXERCISES = ("7.1", "7.2", "7.3", "7.4")
REQUIRED = (
    "data_name", "n_users", "n_items", "encoder_dim", "encode_seconds", "cos_related",
    "cos_unrelated", "norm_error", "mf_ndcg", "content_ndcg", "hybrid_ndcg", "mf_cold_hit",
    "content_cold_hit", "hybrid_cold_hit", "mf_tail_hit", "hybrid_tail_hit", "mf_tailfull_hit",
    "content_tailfull_hit", "hybrid_tailfull_hit", "tail_max", "n_cold_items", "n_cold_users",
    "hybrid_cold_gain", "hybrid_tail_gain", "tail_verdict", "target_max", "attack_words",
    "shortlist", "n_targets", "targets", "target_counts", "exposure_before", "free_after",
    "genre_after", "exposure_before_mean", "free_after_mean", "genre_after_mean",
    "free_shift_mean", "genre_shift_mean", "attack_encoded_mean", "attack_seconds",
    "free_score_gain_min", "transfer_after", "transfer_after_mean", "hybrid_before_mean",
    "hybrid_after_mean", "eps_text", "apr_epochs", "defended_ndcg", "clean_cost",
    "defended_after_mean", "defended_genre_after_mean", "defended_transfer_mean", "attack_gain",
    "defended_gain", "exposure_cut", "detector_threshold", "detector_precision",
    "detector_recall", "n_benign", "n_adversarial", "benign_flagged", "content_proj_norm",
    "defended_proj_norm", "content_user_norm", "defended_user_norm", "attacked_ndcg", "n_seeds",
    "benign_year_median",
    "benign_genre_median", "benign_typo_median", "adversarial_shift_median", "cold_random_hit",
    "evasive_after_mean", "evasive_flagged", "control_ndcg", "control_after_mean",
    "control_cut", "control_verdict", "mf_cold_verdict",
)


def mean(values) -> float:
    return sum(values) / len(values)


def assert_claims(rec: dict, bands: dict) -> None:
    """All of the chapter's claims for one run; ``bands`` is SMOKE or CPU."""
    missing = [name for name in REQUIRED if name not in rec]
    assert not missing, f"not recorded: {missing}"
    profile = advlib.get_profile(bands["profile"])

    # The sentence vectors: unit length, related titles closer than unrelated ones.
    assert rec["encoder_dim"] == 384 and rec["norm_error"] < 1e-4
    assert rec["cos_related"] > rec["cos_unrelated"] + 0.2

    # Three recommenders: the hybrid about as good as MF, the content tower far behind.
    assert rec["mf_ndcg"] >= bands["mf_ndcg_min"]
    assert rec["hybrid_ndcg"] >= bands["hybrid_over_mf_min"] * rec["mf_ndcg"]
    assert rec["content_ndcg"] < 0.7 * rec["hybrid_ndcg"]
    # Cold items: the hybrid beats MF; the long-tail verdict in the prose matches the numbers.
    assert rec["hybrid_cold_gain"] == pytest.approx(rec["hybrid_cold_hit"] - rec["mf_cold_hit"])
    assert rec["hybrid_cold_gain"] >= bands["cold_gain_min"]
    assert rec["hybrid_tail_gain"] == pytest.approx(rec["hybrid_tail_hit"] - rec["mf_tail_hit"])
    assert rec["tail_verdict"] == ("beats" if rec["hybrid_tail_gain"] > 0 else "does not beat")
    assert rec["n_cold_items"] > 0 and rec["n_cold_users"] > 0
    assert 0 < rec["cold_random_hit"] < 1
    assert rec["mf_cold_verdict"] == (
        "no better than" if rec["mf_cold_hit"] <= rec["cold_random_hit"] + 0.05 else "above")
    # Ranked among all items, the long tail almost never reaches the top 10.
    assert max(rec[f"{m}_tailfull_hit"] for m in ("mf", "content", "hybrid")) < 0.1

    # The attack: sizes, per-target and mean lifts, constrained below unconstrained.
    n = rec["n_targets"]
    assert n == profile.text_targets == len(rec["targets"]) == len(rec["free_after"])
    assert rec["attack_words"] == profile.text_words
    assert all(c <= rec["target_max"] for c in rec["target_counts"])
    for key in ("free_after", "genre_after", "transfer_after"):
        assert len(rec[key]) == n
    assert all(a >= b for a, b in zip(rec["free_after"], rec["exposure_before"]))
    assert all(a >= b for a, b in zip(rec["genre_after"], rec["exposure_before"]))
    assert rec["free_after_mean"] == pytest.approx(mean(rec["free_after"]))
    assert rec["free_score_gain_min"] > 0, "every target's mean score rises"
    assert rec["free_after_mean"] >= rec["exposure_before_mean"] + bands["free_after_min"]
    assert rec["free_after_mean"] >= rec["genre_after_mean"]
    assert rec["genre_shift_mean"] < rec["free_shift_mean"]
    assert rec["transfer_after_mean"] >= rec["exposure_before_mean"] + bands["transfer_after_min"]
    assert rec["hybrid_after_mean"] < 0.5 * rec["free_after_mean"]

    # The defence: the attack gains less against the adversarially trained model, at a cost.
    assert rec["attack_gain"] > 0
    assert rec["defended_gain"] <= bands["defended_gain_ratio_max"] * rec["attack_gain"]
    assert rec["defended_after_mean"] < rec["free_after_mean"]
    assert rec["clean_cost"] == pytest.approx(1 - rec["defended_ndcg"] / rec["attacked_ndcg"])
    if rec["n_seeds"] == 1:
        assert rec["attacked_ndcg"] == pytest.approx(rec["content_ndcg"])
    assert 0 < rec["clean_cost"] <= bands["clean_cost_max"]
    # the control (plain BPR, same epochs): its verdict in the prose matches the numbers
    assert rec["control_cut"] == pytest.approx(
        1 - rec["control_after_mean"] / rec["free_after_mean"])
    assert (rec["control_verdict"] == "does not explain the defence") == (
        rec["control_cut"] < 0.5 * rec["exposure_cut"])
    # "adversarial training shrinks the projection and the user vectors"
    assert rec["defended_proj_norm"] < rec["content_proj_norm"]
    assert rec["defended_user_norm"] < rec["content_user_norm"]

    # The edit check: a threshold from benign edits flags few held-out benign ones.
    assert rec["n_adversarial"] == 5 * n
    assert rec["benign_flagged"] <= bands["benign_flag_rate_max"] * rec["n_benign"]
    assert 0 <= rec["detector_recall"] <= 1
    # "a typo moves the vector more than an added genre word", below the adversarial median
    assert rec["benign_genre_median"] < rec["benign_typo_median"] < rec["adversarial_shift_median"]
    # an attacker bounded by the threshold is never flagged
    assert rec["evasive_flagged"] == 0
    assert rec["evasive_after_mean"] >= rec["exposure_before_mean"]

    # Every exercise's solution passed its check.
    for exercise in EXERCISES:
        assert rec.get("exercise_" + exercise.replace(".", "_")) is True, f"exercise {exercise}"


def assert_cpu_claims(rec: dict) -> None:
    """Claims the book's prose makes about the cpu run only."""
    assert rec["exposure_cut"] >= CPU_ONLY["exposure_cut_min"]
    assert rec["exposure_cut"] == pytest.approx(
        1 - rec["defended_after_mean"] / rec["free_after_mean"])
    assert rec["detector_recall"] >= CPU_ONLY["detector_recall_min"]
    assert rec["hybrid_after_mean"] <= rec["hybrid_before_mean"] + 0.05  # "barely moves"
    # MF on cold items: "no better than a random order"; the hybrid far above it
    assert rec["mf_cold_verdict"] == "no better than"
    assert rec["hybrid_cold_hit"] > rec["cold_random_hit"] + 0.3
    assert rec["evasive_after_mean"] > rec["exposure_before_mean"] + 0.02  # "still lifts"


def test_smoke_run_supports_the_chapter_claims(rec):
    assert rec["profile"] == "smoke"
    assert_claims(rec, SMOKE)


def test_smoke_run_used_movielens_100k(rec):
    assert rec["data_name"] == "MovieLens-100K"
    assert (rec["n_users"], rec["n_items"]) == (943, 1682)


@pytest.mark.book
def test_book_run_bands(book_records):
    """The bands of the run the book shows (cpu profile)."""
    rec = book_records[NAME]
    assert rec["profile"] in ("cpu", "gpu")
    assert_claims(rec, CPU)
    assert_cpu_claims(rec)


@pytest.mark.book
@pytest.mark.xfail(strict=True, reason="the long-tail target is not met: among items with "
                   "at most 10 training interactions the hybrid's HR@10 is below MF's; it beats "
                   "MF on cold items only (chapter 7, where text helps)")
def test_book_run_hybrid_beats_mf_on_the_long_tail(book_records):
    rec = book_records[NAME]
    assert rec["hybrid_tail_hit"] > rec["mf_tail_hit"]


def test_the_claims_can_fail(rec):
    """The checker is not a rubber stamp: an attack that lowers exposure, a defence that does not
    reduce the gain, a hybrid no better than MF on cold items, a verdict that contradicts its
    numbers, or a failed exercise are all rejected."""
    no_lift = dict(rec, free_after=rec["exposure_before"],
                   free_after_mean=rec["exposure_before_mean"])
    useless_defence = dict(rec, defended_gain=rec["attack_gain"])
    cold_loss = dict(rec, hybrid_cold_hit=rec["mf_cold_hit"], hybrid_cold_gain=0.0)
    wrong_verdict = dict(rec, tail_verdict="beats" if rec["tail_verdict"] != "beats"
                         else "does not beat")
    score_drop = dict(rec, free_score_gain_min=-0.1)
    free_lunch = dict(rec, defended_ndcg=rec["attacked_ndcg"], clean_cost=0.0)
    unsolved = dict(rec, exercise_7_3=False)
    for bad in (no_lift, useless_defence, cold_loss, wrong_verdict, score_drop, free_lunch,
                unsolved):
        with pytest.raises(AssertionError):
            assert_claims(bad, SMOKE)
