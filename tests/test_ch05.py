"""Chapter 5 (adversarial training for recommenders): the chapter's claims, read back from what
the notebook recorded.

The test suite executes the chapter in the ``smoke`` profile (``records`` fixture, see
tests/conftest.py) and asserts ``SMOKE``. ``CPU`` holds the bands of the ``cpu`` run, the one the
book shows; they are asserted on the book's own run by ``make book`` (``test_book_run_bands``,
marked ``book``; skipped elsewhere).

The claims:

* BPR beats the popularity baseline by a wide margin, and (cpu) reaches RecBole's published
  NDCG@10 on the same protocol; the ablated recipes (no weight decay; no weight decay and 10x
  larger initial rows) do worse;
* APR started from scratch does not learn;
* the worst-case embedding perturbation hurts far more than random directions of the same size,
  at every ε, and its damage grows with ε;
* APR's worst-case drop is smaller than BPR's, and its item vectors are longer;
* at a converged model the training loss's gradient points against the rows and is a weaker
  attack than the test loss's;
* sampled metrics (99 negatives) are several times larger than full-ranking ones;
* choosing the epoch on the test set can only raise the reported number;
* APR costs more time per epoch than BPR, and narrows the catalogue;
* every exercise's solution passes its check.

One target of the issue is not met by the book's run and is kept, visibly, as a strict xfail:
APR's worst-case drop at ε = 0.5 is not at most half of BPR's (see the chapter's robustness
section: most of APR's robustness is the length of its embeddings).
"""
from __future__ import annotations

import pytest

import advlib

NAME = "05_adversarial_recommenders"

SMOKE = {
    "profile": "smoke",
    "bpr_over_pop_min": 1.5,  # BPR's test NDCG@10 / popularity's
    "bpr_ndcg_min": 0.25,  # 25 epochs: not converged, far above popularity (0.14)
    "worst_over_random_min": 4.0,  # worst-case drop / random drop at eps
    "worst_drop_min": 0.10,
    "apr_drop_ratio_max": 0.97,  # APR's worst-case drop / BPR's
    "sampled_over_full_min": 3.0,  # sampled HR@10 / full HR@10 of BPR (leave-one-out)
    "n_seeds_min": 1,
}
CPU = {
    "profile": "cpu",
    "bpr_over_pop_min": 2.0,
    "bpr_ndcg_min": 0.29,  # RecBole publishes 0.2920 for BPR on this protocol
    "worst_over_random_min": 5.0,
    "worst_drop_min": 0.10,  # issue target: >= 10 % at eps = 0.5
    "apr_drop_ratio_max": 0.90,
    "sampled_over_full_min": 4.0,
    "n_seeds_min": 3,
}
CPU_ONLY = {
    "apr_gain_min": 0.03,  # issue target: APR >= +3 % NDCG@10 over the converged BPR, mean of seeds
}
EXERCISES = ("5.1", "5.2", "5.3", "5.4", "5.5")
REQUIRED = (
    "data_name", "n_users", "n_items", "n_train", "n_valid", "n_test", "pop_ndcg", "bpr_ndcg",
    "bpr_recall", "bpr_hit", "bpr_seconds", "ablation_init_ndcg", "ablation_nowd_ndcg", "eps",
    "seeds", "n_seeds", "bpr_ndcg_seeds", "apr_ndcg_seeds", "cont_ndcg_seeds",
    "scratch_ndcg_seeds", "early_ndcg_seeds", "apr_gain_mean", "cont_gain_mean",
    "scratch_best_epoch_max", "eps_grid", "bpr_worst_drop", "bpr_random_drop", "apr_worst_drop",
    "apr_random_drop", "bpr_worst_drop_curve", "bpr_random_drop_curve", "apr_worst_drop_curve",
    "apr_random_drop_curve", "bpr_rel_worst_drop_curve", "apr_rel_worst_drop_curve",
    "drop_ratio", "bpr_item_norm", "apr_item_norm", "bpr_cos_train", "bpr_cos_test",
    "bpr_train_attack_drop", "leak_bpr_honest", "leak_bpr_picked", "leak_apr_honest",
    "leak_apr_picked", "loo_inflation", "apr_time_ratio", "bpr_coverage_mean",
    "apr_coverage_mean",
)


def assert_claims(rec: dict, bands: dict) -> None:
    """All of the chapter's claims for one run; ``bands`` is SMOKE or CPU."""
    missing = [name for name in REQUIRED if name not in rec]
    assert not missing, f"not recorded: {missing}"
    profile = advlib.get_profile(bands["profile"])

    # The data and the protocol.
    assert rec["n_train"] + rec["n_valid"] + rec["n_test"] == rec["n_interactions"]
    assert 0.78 < rec["n_train"] / rec["n_interactions"] < 0.82
    assert rec["n_seeds"] == len(rec["seeds"]) == profile.apr_seeds >= bands["n_seeds_min"]

    # A strong baseline, far above popularity.
    assert rec["bpr_ndcg"] >= bands["bpr_ndcg_min"]
    assert rec["bpr_ndcg"] >= bands["bpr_over_pop_min"] * rec["pop_ndcg"]
    assert rec["bpr_recall"] > rec["pop_recall"] and rec["bpr_hit"] > rec["pop_hit"]
    assert rec["bpr_ndcg_seeds"][0] == pytest.approx(rec["bpr_ndcg"])
    for key in ("cont", "apr", "scratch", "early"):
        assert len(rec[f"{key}_ndcg_seeds"]) == rec["n_seeds"]

    # APR started from scratch does not learn: no validation gain over the random start.
    assert rec["scratch_best_epoch_max"] == 0
    assert max(rec["scratch_ndcg_seeds"]) < rec["pop_ndcg"]

    # Worst case against random, at every eps of the curve, both models.
    grid = rec["eps_grid"]
    at = grid.index(rec["eps"])
    assert grid[0] == 0 and all(a < b for a, b in zip(grid, grid[1:]))
    for model in ("bpr", "apr"):
        worst, rand = rec[f"{model}_worst_drop_curve"], rec[f"{model}_random_drop_curve"]
        assert worst[0] == rand[0] == 0
        assert worst[at] == pytest.approx(rec[f"{model}_worst_drop"])
        assert rand[at] == pytest.approx(rec[f"{model}_random_drop"])
        assert all(w > r for w, r in zip(worst[1:], rand[1:])), (worst, rand)
        assert all(b >= a - 1e-9 for a, b in zip(worst, worst[1:])), worst  # grows with eps
        rel = rec[f"{model}_rel_worst_drop_curve"]
        assert all(b >= a - 1e-9 for a, b in zip(rel, rel[1:])), rel
    assert rec["bpr_worst_drop"] >= bands["worst_drop_min"]
    assert rec["bpr_worst_drop"] >= bands["worst_over_random_min"] * max(rec["bpr_random_drop"], 1e-3)

    # APR is more robust than BPR in absolute eps, and its item vectors are longer.
    assert rec["drop_ratio"] == pytest.approx(rec["apr_worst_drop"] / rec["bpr_worst_drop"])
    assert rec["apr_worst_drop"] < rec["bpr_worst_drop"]
    assert rec["drop_ratio"] <= bands["apr_drop_ratio_max"]
    assert rec["apr_item_norm"] > rec["bpr_item_norm"]

    # The training-loss gradient points against the rows: a weaker attack than the test loss's.
    assert rec["bpr_cos_train"] < rec["bpr_cos_test"] < 0
    assert rec["bpr_train_attack_drop"] < rec["bpr_worst_drop"]

    # Leaks: picking the epoch on the test set never lowers the number; sampled metrics inflate.
    for model in ("bpr", "apr"):
        assert rec[f"leak_{model}_picked"] >= rec[f"leak_{model}_honest"]
    assert rec["leak_bpr_honest"] == pytest.approx(rec["bpr_ndcg"])
    for model in ("pop", "bpr", "nowd"):
        assert rec[f"loo_{model}_hit_sampled"] > rec[f"loo_{model}_hit_full"]
        assert rec[f"loo_{model}_ndcg_sampled"] > rec[f"loo_{model}_ndcg_full"]
    assert rec["loo_inflation"] == pytest.approx(rec["loo_bpr_hit_sampled"] / rec["loo_bpr_hit_full"])
    assert rec["loo_inflation"] >= bands["sampled_over_full_min"]
    assert (rec["loo_swaps"] == 0) == rec["loo_reorder_text"].startswith("the three models keep")

    # Cost and popularity bias.
    assert rec["apr_time_ratio"] > 1.3
    assert rec["apr_coverage_mean"] < rec["bpr_coverage_mean"]

    # Every exercise's solution passed its check.
    for exercise in EXERCISES:
        assert rec.get("exercise_" + exercise.replace(".", "_")) is True, f"exercise {exercise}"


def assert_cpu_claims(rec: dict) -> None:
    """Claims the book's prose makes about the cpu run only (converged models, several seeds)."""
    assert rec["apr_gain_mean"] >= CPU_ONLY["apr_gain_min"]
    assert min(rec["apr_ndcg_seeds"][k] - rec["bpr_ndcg_seeds"][k]
               for k in range(rec["n_seeds"])) > 0  # every seed gains
    # the ablations: no weight decay is worse, and larger starting rows on top worse still
    assert rec["ablation_init_ndcg"] < rec["ablation_nowd_ndcg"] < rec["bpr_ndcg"]
    assert rec["early_gain_mean"] < rec["apr_gain_mean"]  # started too early: the gain is lost
    assert rec["bpr_cos_train"] < -0.7  # "points almost straight against each user row"


def test_smoke_run_supports_the_chapter_claims(rec):
    assert rec["profile"] == "smoke"
    assert_claims(rec, SMOKE)


def test_smoke_run_used_movielens_100k(rec):
    assert rec["data_name"] == "MovieLens-100K"  # offline: the copy in the recbole wheel
    assert (rec["n_users"], rec["n_items"], rec["n_interactions"]) == (943, 1682, 100_000)


@pytest.mark.book
def test_book_run_bands(book_records):
    """The bands of the run the book shows (cpu profile; the gpu run uses MovieLens-1M)."""
    rec = book_records[NAME]
    assert rec["profile"] in ("cpu", "gpu")
    assert_claims(rec, CPU)
    assert_cpu_claims(rec)


@pytest.mark.book
@pytest.mark.xfail(strict=True, reason="issue 5 target not met: at eps = 0.5 APR's worst-case "
                   "drop is about 0.8 of BPR's, not at most half (chapter 5, robustness section)")
def test_book_run_apr_halves_the_worst_case_drop(book_records):
    rec = book_records[NAME]
    assert rec["apr_worst_drop"] <= 0.5 * rec["bpr_worst_drop"]


def test_the_claims_can_fail(rec):
    """The checker is not a rubber stamp: noise as strong as the worst case, an APR less robust
    than BPR, sampled metrics no larger than full ones, a BPR no better than popularity or a failed
    exercise are all rejected."""
    as_strong = dict(rec, bpr_random_drop=rec["bpr_worst_drop"],
                     bpr_random_drop_curve=rec["bpr_worst_drop_curve"])
    fragile = dict(rec, apr_worst_drop=1.1 * rec["bpr_worst_drop"],
                   drop_ratio=1.1)
    sampled_low = dict(rec, loo_bpr_hit_sampled=rec["loo_bpr_hit_full"], loo_inflation=1.0)
    weak_bpr = dict(rec, bpr_ndcg=rec["pop_ndcg"])
    learned_from_scratch = dict(rec, scratch_best_epoch_max=10)
    unsolved = dict(rec, exercise_5_2=False)
    for bad in (as_strong, fragile, sampled_low, weak_bpr, learned_from_scratch, unsolved):
        with pytest.raises(AssertionError):
            assert_claims(bad, SMOKE)
