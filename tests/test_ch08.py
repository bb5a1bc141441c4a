"""Chapter 8 (a transformer sequence recommender under history-substitution attacks): the
chapter's claims, read back from what the notebook recorded.

The test suite executes the chapter in the ``smoke`` profile (``records`` fixture, see
tests/conftest.py) and asserts ``SMOKE``. ``CPU`` holds the bands of the ``cpu`` run, the one the
book shows; they are asserted on the book's own run by ``make book`` (``test_book_run_bands``,
marked ``book``; skipped elsewhere).

The claims:

* SASRec beats the popularity baseline clearly (leave-one-out by time, full ranking);
* substituting items chosen by the gradient lowers NDCG@10 measurably, and more than the same
  number of random substitutions, for every budget r, with and without adversarial training;
  more substitutions do more damage;
* the targeted attack moves the target up the rankings, more than random substitutions;
* with adversarial training the mean damage of the gradient attack over seeds is smaller at every
  budget (cpu: three seeds, mean ± std recorded; the prose says whether the reduction exceeds the
  spread over seeds: in the book's run it does not);
* adversarial training costs time per epoch;
* every exercise's solution passes its check.

Two targets are not met by the book's run and are kept, visibly, as strict xfails: adversarial
training at most halves the damage (as Yue et al. report on MovieLens-1M), and its reduction of
the damage at one substitution exceeds the spread over seeds.
"""
from __future__ import annotations

import pytest

import advlib

NAME = "08_sequential_recommenders"

SMOKE = {
    "profile": "smoke",
    "sas_over_pop_min": 1.2,  # 6 epochs, 32 dimensions: far from converged, above popularity
    "damage_r1_min": 0.15,  # one gradient substitution: relative NDCG@10 drop
    "gradient_over_random_min": 2.0,  # gradient damage / random damage at r = max
    "damage_ratio_max": 1.0,  # AT's gradient damage / plain's, at every r
    "target_lift_min": 0.0,  # HR@10 lift of the target (an untrained smoke model barely moves)
    "n_seeds_min": 1,
}
CPU = {
    "profile": "cpu",
    "sas_over_pop_min": 2.0,
    "damage_r1_min": 0.3,
    "gradient_over_random_min": 3.0,
    "damage_ratio_max": 1.0,  # smaller on average at every r; not beyond the seed spread
    "target_lift_min": 0.1,
    "n_seeds_min": 3,
}
EXERCISES = ("8.1", "8.2", "8.3", "8.4")
REQUIRED = (
    "data_name", "n_users", "n_items", "n_interactions", "max_len", "pop_ndcg", "pop_hit",
    "sas_ndcg", "sas_hit", "sas_over_pop", "seeds", "n_seeds", "clean_plain_seeds",
    "clean_at_seeds", "clean_plain_mean", "clean_plain_std", "clean_at_mean", "clean_at_std",
    "at_time_ratio", "max_r", "n_attacked", "damage_ratio", "damage_ratio_r1",
    "damage_ratio_rmax", "target_hr_before", "target_rank_before", "target_rank_after",
    "at_verdict", "damage_spread_r1", "spread_verdict",
)
KEYS = [f"damage_{model}_{method}" for model in ("plain", "at") for method in ("random", "gradient")]


def assert_claims(rec: dict, bands: dict) -> None:
    """All of the chapter's claims for one run; ``bands`` is SMOKE or CPU."""
    missing = [name for name in REQUIRED if name not in rec]
    missing += [f"{key}_{part}" for key in KEYS for part in ("mean", "std", "seeds")
                if f"{key}_{part}" not in rec]
    assert not missing, f"not recorded: {missing}"
    profile = advlib.get_profile(bands["profile"])
    R, n = rec["max_r"], rec["n_seeds"]

    # The run's size is the profile's.
    assert n == len(rec["seeds"]) == profile.seq_seeds >= bands["n_seeds_min"]
    assert R == profile.seq_substitutions and rec["max_len"] == profile.seq_len
    assert len(rec["clean_plain_seeds"]) == len(rec["clean_at_seeds"]) == n

    # SASRec beats popularity clearly.
    assert rec["sas_ndcg"] >= bands["sas_over_pop_min"] * rec["pop_ndcg"]
    assert rec["sas_hit"] > rec["pop_hit"]
    assert rec["sas_over_pop"] == pytest.approx(rec["sas_ndcg"] / rec["pop_ndcg"])
    assert min(rec["clean_plain_seeds"] + rec["clean_at_seeds"]) > rec["pop_ndcg"]

    # The records agree with each other: means and standard deviations of the per-seed values.
    for key in KEYS:
        seeds = rec[f"{key}_seeds"]
        assert len(seeds) == n and all(len(row) == R for row in seeds)
        for r in range(R):
            assert rec[f"{key}_mean"][r] == pytest.approx(sum(s[r] for s in seeds) / n)
            assert rec[f"{key}_std"][r] >= 0 and (n > 1 or rec[f"{key}_std"][r] == 0)
    plain, robust = rec["damage_plain_gradient_mean"], rec["damage_at_gradient_mean"]
    assert rec["damage_ratio"] == pytest.approx([a / p for a, p in zip(robust, plain)])
    assert rec["damage_ratio_r1"] == pytest.approx(rec["damage_ratio"][0])
    assert rec["damage_ratio_rmax"] == pytest.approx(rec["damage_ratio"][-1])

    # The gradient attack hurts, more than random substitution, at every budget, both models;
    # more substitutions do more damage.
    assert plain[0] >= bands["damage_r1_min"]
    for model in ("plain", "at"):
        gradient = rec[f"damage_{model}_gradient_mean"]
        random = rec[f"damage_{model}_random_mean"]
        assert all(g > r for g, r in zip(gradient, random)), (gradient, random)
        assert all(b >= a - 0.02 for a, b in zip(gradient, gradient[1:])), gradient
        assert gradient[-1] >= bands["gradient_over_random_min"] * max(random[-1], 0.01)

    # Adversarial training leaves less damage.
    assert max(rec["damage_ratio"]) <= bands["damage_ratio_max"], rec["damage_ratio"]
    assert rec["at_verdict"] == ("at most half" if max(rec["damage_ratio"]) <= 0.5 else
                                 "smaller, but more than half")
    if n > 1:
        beyond = plain[0] - robust[0] > rec["damage_spread_r1"]
        assert rec["spread_verdict"].startswith("larger than") == beyond
    else:
        assert rec["spread_verdict"] == "not measurable with one seed"

    # The targeted attack moves the target up, more than random substitutions do.
    assert rec["target_rank_after"] < rec["target_rank_before"]
    for model in ("plain", "at"):
        gradient = rec[f"target_{model}_gradient_rank_mean"]
        random = rec[f"target_{model}_random_rank_mean"]
        assert gradient[-1] < random[-1] and gradient[-1] < gradient[0], (gradient, random)
        assert rec[f"target_{model}_gradient_lift_mean"] >= bands["target_lift_min"]
        assert rec[f"target_{model}_gradient_lift_mean"] >= rec[f"target_{model}_random_lift_mean"]

    # Adversarial training costs time: a second forward and backward pass per batch.
    assert rec["at_time_ratio"] > 1.3

    # Every exercise's solution passed its check.
    for exercise in EXERCISES:
        assert rec.get("exercise_" + exercise.replace(".", "_")) is True, f"exercise {exercise}"


def assert_cpu_claims(rec: dict) -> None:
    """Claims the book's prose makes about the cpu run only (three seeds)."""
    assert rec["recent_share"] > 0.5  # "the first substitution hits the most recent item"
    # the defence costs clean accuracy, and the targeted attack still lifts the target a lot
    assert rec["at_clean_change"] < 0
    assert rec["target_at_gradient_lift_mean"] < rec["target_plain_gradient_lift_mean"]


def test_smoke_run_supports_the_chapter_claims(rec):
    assert rec["profile"] == "smoke"
    assert_claims(rec, SMOKE)


def test_smoke_run_used_movielens_100k(rec):
    assert rec["data_name"] == "MovieLens-100K"  # offline: the copy in the recbole wheel
    assert (rec["n_users"], rec["n_items"], rec["n_interactions"]) == (943, 1682, 100_000)
    assert rec["n_attacked"] == advlib.get_profile("smoke").seq_attack_users


@pytest.mark.book
def test_book_run_bands(book_records):
    """The bands of the run the book shows (cpu profile; the gpu run uses MovieLens-1M)."""
    rec = book_records[NAME]
    assert rec["profile"] in ("cpu", "gpu")
    assert_claims(rec, CPU)
    assert_cpu_claims(rec)


@pytest.mark.book
@pytest.mark.xfail(strict=True, reason="issue target not met: adversarial training of the input "
                   "embeddings leaves clearly more than half of the gradient attack's damage "
                   "(chapter 8, attack section)")
def test_book_run_adversarial_training_halves_the_damage(book_records):
    rec = book_records[NAME]
    assert max(rec["damage_ratio"]) <= 0.5


@pytest.mark.book
@pytest.mark.xfail(strict=True, reason="issue target not met: the reduction of the damage by "
                   "adversarial training is within the spread over three seeds (chapter 8)")
def test_book_run_reduction_exceeds_the_seed_spread(book_records):
    rec = book_records[NAME]
    assert rec["spread_verdict"].startswith("larger than")


def test_the_claims_can_fail(rec):
    """The checker is not a rubber stamp: a gradient attack no stronger than random, an
    adversarially trained model hurt more than the plain one, a SASRec no better than popularity,
    a target that does not move, inconsistent records or a failed exercise are all rejected."""
    R = rec["max_r"]
    as_random = dict(rec, damage_plain_gradient_mean=rec["damage_plain_random_mean"])
    worse = [1.2 * d for d in rec["damage_plain_gradient_mean"]]
    fragile = dict(rec, damage_at_gradient_mean=worse,
                   damage_ratio=[1.2] * R, damage_ratio_r1=1.2, damage_ratio_rmax=1.2)
    weak = dict(rec, sas_ndcg=rec["pop_ndcg"], sas_over_pop=1.0)
    unmoved = dict(rec, target_rank_after=rec["target_rank_before"])
    inconsistent = dict(rec, damage_ratio=[0.1] * R)
    unsolved = dict(rec, exercise_8_3=False)
    for bad in (as_random, fragile, weak, unmoved, inconsistent, unsolved):
        with pytest.raises(AssertionError):
            assert_claims(bad, SMOKE)
