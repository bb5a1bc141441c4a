"""Chapter 4 (the MNIST case study): the chapter's claims, read back from what the notebook
recorded. The units of advlib.training are in tests/test_training.py.

The test suite executes the chapter in the ``smoke`` profile (``records`` fixture, see
tests/conftest.py) and asserts ``SMOKE``. ``CPU`` holds the bands of the ``cpu`` run the book shows
(the issue's targets); ``make book`` asserts them on the book's own run (``test_book_run_bands``,
marked ``book``; skipped elsewhere).

The claims, at the chapter's ℓ∞ radius ``eps``:

* the common recipe's leaked score (retrained on noisy test images, scored on the same images)
  goes up, while its PGD-20 accuracy on held-out images stays close to the untouched model's;
* the standard CNN is accurate and brittle: PGD ≤ FGSM, PGD with restarts ≤ PGD-20, and its PGD
  curve never rises with ε;
* every adversarially trained model is more robust under PGD than the standard one; in the cpu
  run by ≥ 50 points (PGD-AT: clean ≥ 94 %, PGD-20 ≥ 85 %);
* FGSM-RS ran with its guard and the guard's verdict is recorded; FGSM-RS holds ≥ 78 % under
  PGD-20 in the cpu run unless catastrophic overfitting was detected;
* cost: gradient evaluations per example are steps + 1 (PGD-AT, TRADES), 2 (FGSM-RS), 1 (standard);
* the sanity checks are recorded for every robust model, and every exercise passes its check.
"""
from __future__ import annotations

from pathlib import Path

import papermill
import pytest

import advlib
from advlib.data import DataUnavailableError, load_fashion_mnist

NAME = "04_mnist_case_study"
CHAPTER = Path(__file__).resolve().parents[1] / "notebooks" / f"{NAME}.ipynb"

SMOKE = {
    "profile": "smoke",
    "recipe_pgd_gap_max": 0.15,  # |recipe_pgd − mlp_pgd|
    "clean_standard_min": 0.75,
    "gain_min": 0.05,  # robust − standard PGD-20, each robust model (3 epochs on 600 digits)
    "pgd_at_clean_min": 0.60,
    "pgd_at_pgd20_min": 0.0,
    "standard_pgd20_max": 1.0,
    "fgsm_rs_pgd20_min": 0.0,
}
# The cpu targets.
CPU = dict(SMOKE, profile="cpu", recipe_pgd_gap_max=0.05, clean_standard_min=0.95,
           gain_min=0.50, pgd_at_clean_min=0.94, pgd_at_pgd20_min=0.85, standard_pgd20_max=0.25,
           fgsm_rs_pgd20_min=0.78)
AUTOATTACK_GAP_MAX = 0.03  # PGD-AT: AutoAttack at most 3 points below PGD-100 with restarts
EXERCISES = ("4.1", "4.2", "4.3", "4.4")
ROBUST = ("pgd_at", "fgsm_rs", "trades")
REQUIRED = (
    "eps", "dataset", "data_source", "n_train", "n_test", "n_eval", "epochs", "at_steps",
    "recipe_before", "recipe_after", "recipe_gain", "recipe_heldout", "mlp_heldout",
    "recipe_pgd", "mlp_pgd",
    "clean_standard", "fgsm_standard", "pgd20_standard", "pgd50r_standard", "pgd100r_standard",
    "eps_grid", "architecture", "lr_max", "n_standard_seeds", "standard_seeds_pgd20",
    "standard_seeds_pgd20_min", "standard_seeds_pgd20_max",
    "standard_fgsm_curve", "standard_pgd_curve", "guard_history", "guard_rolled_back",
    "co_detected", "co_unguarded_pgd", "co_guarded_pgd",
    *(f"{m}_{c}" for m in ("standard",) + ROBUST
      for c in ("clean", "fgsm", "pgd20", "pgd_strong", "train_s", "grad_evals", "cost_x")),
    "gain_pgd_at", "gain_fgsm_rs", "gain_trades",
    *(f"sanity_{m}_all" for m in ROBUST),
)


def non_increasing(values, slack):
    return all(b <= a + slack + 1e-9 for a, b in zip(values, values[1:]))


def assert_claims(rec: dict, bands: dict) -> None:
    missing = [name for name in REQUIRED if name not in rec]
    assert not missing, f"not recorded: {missing}"
    profile = advlib.get_profile(bands["profile"])
    one = 1 / rec["n_eval"] + 1e-9
    assert rec["epochs"] == profile.at_epochs and rec["at_steps"] == profile.at_steps

    # The common recipe: the leaked number rises; held-out robustness does not.
    assert rec["recipe_after"] > rec["recipe_before"]
    assert abs(rec["recipe_pgd"] - rec["mlp_pgd"]) <= bands["recipe_pgd_gap_max"]
    assert rec["recipe_pgd"] < rec["recipe_heldout"] - 0.2

    # The standard CNN: accurate, brittle, PGD at least as strong as FGSM, restarts stronger.
    assert rec["clean_standard"] >= bands["clean_standard_min"]
    assert rec["pgd20_standard"] <= rec["fgsm_standard"] + one
    assert rec["pgd50r_standard"] <= rec["pgd20_standard"] + one
    assert rec["pgd100r_standard"] <= rec["pgd50r_standard"] + one
    seeds = rec["standard_seeds_pgd20"]
    assert len(seeds) == rec["n_standard_seeds"] and seeds[0] == pytest.approx(rec["pgd20_standard"])
    assert rec["standard_seeds_pgd20_min"] == min(seeds) <= max(seeds) == rec["standard_seeds_pgd20_max"]
    assert rec["pgd20_standard"] <= bands["standard_pgd20_max"]
    assert non_increasing(rec["standard_pgd_curve"], one)
    assert rec["standard_pgd_curve"][0] == pytest.approx(rec["clean_standard"])

    # Adversarial training makes the model more robust under PGD.
    for m in ROBUST:
        assert rec[f"gain_{m}"] >= bands["gain_min"], m
        assert rec[f"{m}_pgd_strong"] <= rec[f"{m}_pgd20"] + one, m
        assert rec[f"{m}_pgd20"] <= rec[f"{m}_clean"] + 1e-9, m
    assert rec["pgd_at_clean"] >= bands["pgd_at_clean_min"]
    assert rec["pgd_at_pgd20"] >= bands["pgd_at_pgd20_min"]
    if not rec["guard_rolled_back"]:
        assert rec["fgsm_rs_pgd20"] >= bands["fgsm_rs_pgd20_min"]

    # The guard ran once before training and after each epoch it kept.
    assert 2 <= len(rec["guard_history"]) <= rec["epochs"] + 1
    assert isinstance(rec["co_detected"], bool)

    # Cost: gradient evaluations per example and epoch.
    assert rec["standard_grad_evals"] == 1 and rec["fgsm_rs_grad_evals"] == 2
    assert rec["pgd_at_grad_evals"] == rec["trades_grad_evals"] == rec["at_steps"] + 1
    assert rec["standard_cost_x"] == 1

    for exercise in EXERCISES:
        assert rec.get("exercise_" + exercise.replace(".", "_")) is True, f"exercise {exercise}"


def test_smoke_run_supports_the_chapter_claims(rec):
    assert rec["profile"] == "smoke"
    assert_claims(rec, SMOKE)


def test_smoke_run_used_the_offline_sample_of_real_digits(rec):
    assert rec["data_source"] == "sample" and rec["dataset"] == "mnist"


@pytest.mark.book
def test_book_run_bands(book_records):
    """The bands of the run the book shows: the issue's cpu targets."""
    rec = book_records[NAME]
    assert rec["profile"] in ("cpu", "gpu")
    assert_claims(rec, CPU)
    for m in ROBUST:
        assert rec[f"sanity_{m}_all"] is True, m
    # AutoAttack checks PGD: for PGD-AT it finds at most a few more adversarial examples.
    size = rec["autoattack_size"]
    assert size >= 100
    assert rec["pgd_at_autoattack"] <= rec["pgd_at_pgd100r_subset"] + 1 / size + 1e-9
    assert rec["aa_gap_pgd_at"] <= AUTOATTACK_GAP_MAX
    # The committed cpu models reload and reproduce their recorded clean accuracy.
    if rec["profile"] == "cpu" and rec["dataset"] == "mnist":
        assert rec["saved_models_checked"] == 1 + len(ROBUST)
        assert rec["saved_models_reproduce"] is True


def test_the_claims_can_fail(rec):
    """The checker is not a rubber stamp."""
    no_leak = dict(rec, recipe_after=rec["recipe_before"])
    at_useless = dict(rec, gain_pgd_at=0.0, pgd_at_pgd20=rec["pgd20_standard"])
    fgsm_stronger = dict(rec, fgsm_standard=rec["pgd20_standard"] - 0.1)
    rising = dict(rec, standard_pgd_curve=rec["standard_pgd_curve"][:-1]
                  + [rec["standard_pgd_curve"][-2] + 0.1])
    wrong_cost = dict(rec, pgd_at_grad_evals=rec["at_steps"])
    unfinished = {k: v for k, v in rec.items() if k != "exercise_4_2"}
    for bad in (no_leak, at_useless, fgsm_stronger, rising, wrong_cost, unfinished):
        with pytest.raises(AssertionError):
            assert_claims(bad, SMOKE)


def test_the_dataset_switch_tells_the_same_story_on_fashion_mnist(tmp_path, monkeypatch):
    """``DATASET = "fashion"`` runs the whole chapter on Fashion-MNIST (the Debian package,
    offline), and the smoke claims hold there too."""
    try:
        load_fashion_mnist(source="debian", n_train=10, n_test=10)
    except DataUnavailableError:
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    for key, value in {"ADVLIB_PROFILE": "smoke", "ADVLIB_OFFLINE": "1", "TQDM_DISABLE": "1"}.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / CHAPTER.name
    papermill.execute_notebook(str(CHAPTER), str(out), kernel_name="python3",
                               cwd=str(CHAPTER.parent), parameters={"DATASET": "fashion"},
                               progress_bar=False)
    rec = advlib.read_records(out)
    assert rec["dataset"] == "fashion" and rec["data_source"] == "debian"
    assert_claims(rec, dict(SMOKE, clean_standard_min=0.65))  # Fashion-MNIST is harder
