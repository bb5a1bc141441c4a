"""Chapter 3 (gradient perturbations, black-box attacks, honest evaluation): the chapter's claims,
read back from what the notebook recorded; and the units it adds to advlib (the training loop, the
exercise checks).

The test suite executes the chapter in the ``smoke`` profile (``records`` fixture, see
tests/conftest.py) and asserts ``SMOKE``. ``CPU`` holds the bands of the ``cpu`` run, the one the
book shows; they are asserted on the book's own run by ``make book`` (``test_book_run_bands``,
marked ``book``; skipped elsewhere).

The claims, all at the chapter's ℓ∞ radius ``eps`` unless a curve is named:

* the standard CNN is accurate on clean held-out digits, and the PGD loop written out in the
  chapter produces exactly the images of ``advlib.attacks.pgd``;
* PGD's loss rises and levels off: twice the steps add little, restarts end close together;
* PGD accuracy < FGSM accuracy ≤ noise accuracy, with a gap of tens of points to noise; the same
  order in ℓ2 (PGD-20 ≤ one step ≤ noise);
* the PGD curve never rises with ε (up to one image) and reaches (almost) 0 at the largest ε, while
  noise stays near the clean accuracy; PGD ≤ FGSM at every ε;
* black box: white-box PGD ≤ ZOO ≤ noise on ZOO's subset; ZOO keeps to its query budget and fools
  some images; a transfer attack from a surrogate MLP lands between white-box PGD and clean, and
  well below noise; a targeted attack succeeds less often than an untargeted one;
* more steps and more restarts change PGD's accuracy little;
* every sanity check passes on the standard model;
* a model with logits × 10⁴ looks robust under cross-entropy PGD, the checks flag it (zero
  gradients, the loss does not rise, a huge ε does not break it) and the CW margin exposes it
  (the same accuracy as the unscaled model); a softmax-output model fails ``outputs_are_logits``;
* a dropout model left in train mode: advlib gives the same number in train and in eval mode, the
  checks flag ``eval_mode`` and ``deterministic``, and a naive loop that forgets ``model.eval()``
  attacks no better and scores at random;
* early stopping gives the identical robust accuracy with fewer gradient evaluations (wall time
  is recorded, never asserted);
* every exercise's solution passes its check.
"""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from torch import nn

import advlib
from advlib import attacks
from advlib.training import train

NAME = "03_gradient_perturbations"

# One image of slack is allowed wherever two numbers come from different random draws; the gaps
# between attacks are tens of points, so none of these bands survives a real regression (an
# attack no stronger than noise, a curve that rises, an evaluation fooled by huge logits, early
# stopping that changes the answer, a check that rejects its own solution).
SMOKE = {
    "profile": "smoke",
    "clean_acc_min": 0.80,  # 600 training digits, a few epochs
    "n_test_min": 100,
    "noise_drop_max": 0.06,  # clean − noise accuracy at eps
    "noise_gap_min": 0.20,  # noise − PGD accuracy at eps
    "noise_at_max_min": 0.55,  # noise accuracy at the largest ε (a weak model suffers from noise)
    "pgd_at_max_max": 0.03,
    "l2_gap_min": 0.20,  # noise − PGD accuracy at the l2 radius
    "steps_restarts_tol": 0.03,
    "transfer_noise_gap_min": 0.05,  # noise − transfer accuracy at eps
    "looks_robust_min": 0.25,  # CE-PGD accuracy of the scaled model − of the plain model
    "zero_gradients_min": 0.5,
}
CPU = dict(SMOKE, profile="cpu", clean_acc_min=0.93, n_test_min=500, noise_drop_max=0.03,
           noise_gap_min=0.30, noise_at_max_min=0.70, pgd_at_max_max=0.01, l2_gap_min=0.30,
           steps_restarts_tol=0.02, transfer_noise_gap_min=0.10, looks_robust_min=0.30)
EXERCISES = ("3.1", "3.2", "3.3", "3.4", "3.5")
CHECK_NAMES = {"eval_mode", "deterministic", "outputs_are_logits", "gradients_nonzero",
               "loss_increases", "pgd_beats_fgsm", "more_steps_change_little",
               "more_restarts_change_little", "white_box_beats_noise", "accuracy_falls_with_eps",
               "large_eps_breaks_model"}
REQUIRED = (
    "data_source", "n_train", "n_test", "n_check", "cnn_epochs", "train_acc", "clean_acc",
    "eps", "steps", "restarts", "alpha", "pgd_trace_gap",
    "ce_loss_clean", "ce_loss_steps", "ce_loss_end", "ce_loss_spread", "cw_margin_clean",
    "cw_margin_end",
    "noise_acc", "fgsm_acc", "fgsm_cw_acc", "pgd_acc", "pgd_cw_acc", "noise_l2_acc", "pgd_l2_acc",
    "eps_l2", "targeted_success", "untargeted_success",
    "eps_grid", "noise_curve", "fgsm_curve", "pgd_curve", "eps_max", "pgd_acc_at_max",
    "noise_acc_at_max", "n_zoo", "zoo_budget", "zoo_eps", "zoo_curve", "zoo_pgd_curve",
    "zoo_noise_curve", "zoo_mean_queries",
    "eps_l2_grid", "noise_l2_curve", "pgd1_l2_curve", "pgd_l2_curve", "eps_l2_max",
    "pgd_l2_acc_at_max",
    "zoo_acc", "zoo_pgd_acc", "zoo_noise_acc", "zoo_queries_mean", "zoo_queries_max",
    "zoo_success", "zoo_queries_success", "zoo_iterations",
    "surrogate_clean_acc", "surrogate_self_acc", "transfer_acc", "transfer_acc_2eps",
    "pgd_acc_2eps",
    "pgd_base_acc", "pgd_more_steps_acc", "pgd_restarts_acc", "more_steps", "sanity_standard",
    "sanity_standard_all",
    "check_clean_acc", "scaled_clean_acc", "check_ce_acc", "scaled_ce_acc", "check_cw_acc",
    "scaled_cw_acc", "sanity_scaled_failed", "scaled_zero_gradients", "sanity_softmax_failed",
    "dropout_clean_acc", "dropout_naive_clean", "dropout_naive_reported",
    "dropout_naive_measured", "dropout_naive_measured_min", "dropout_naive_measured_max",
    "dropout_naive_reported_min", "dropout_naive_reported_max", "dropout_honest_train_mode",
    "dropout_honest_eval_mode", "dropout_still_training", "sanity_dropout_failed",
    "cost_acc_full", "cost_acc_early", "cost_grads_full", "cost_grads_early",
    "cost_seconds_full", "cost_seconds_early", "cost_grad_ratio", "cost_time_ratio",
)


def non_increasing(values, slack):
    return all(b <= a + slack + 1e-9 for a, b in zip(values, values[1:]))


def assert_claims(rec: dict, bands: dict) -> None:
    """All of the chapter's claims for one run; ``bands`` is SMOKE or CPU."""
    missing = [name for name in REQUIRED if name not in rec]
    assert not missing, f"not recorded: {missing}"
    profile = advlib.get_profile(bands["profile"])
    eps, steps, restarts = rec["eps"], rec["steps"], rec["restarts"]
    one = 1 / rec["n_test"] + 1e-9
    one_check = 1 / rec["n_check"] + 1e-9
    one_zoo = 1 / rec["n_zoo"] + 1e-9

    # The run, the data and the model.
    assert rec["n_test"] >= bands["n_test_min"] and rec["n_train"] > rec["n_test"]
    assert 0 < rec["n_check"] <= rec["n_test"] and 0 < rec["n_zoo"] <= rec["n_test"]
    assert rec["cnn_epochs"] == profile.cnn_epochs
    assert rec["clean_acc"] >= bands["clean_acc_min"]
    assert rec["train_acc"] >= rec["clean_acc"] - 0.05
    assert rec["alpha"] == pytest.approx(2.5 * eps / steps)
    # The PGD loop written out in the chapter is advlib's PGD, image for image.
    assert rec["pgd_trace_gap"] <= 1e-6

    # PGD's loss rises, then levels off; restarts end close together.
    assert rec["ce_loss_steps"] >= 1.5 * rec["ce_loss_clean"]
    assert rec["ce_loss_end"] - rec["ce_loss_steps"] <= 0.25 * (rec["ce_loss_steps"] - rec["ce_loss_clean"])
    assert rec["ce_loss_spread"] <= 0.1 * rec["ce_loss_end"]
    assert rec["cw_margin_end"] > rec["cw_margin_clean"]

    # At eps: PGD < FGSM ≤ noise, far below noise; noise barely matters.
    assert rec["pgd_acc"] < rec["fgsm_acc"] <= rec["noise_acc"] + one
    assert rec["pgd_cw_acc"] <= rec["fgsm_acc"] + one
    assert rec["noise_acc"] - rec["pgd_acc"] >= bands["noise_gap_min"]
    assert rec["clean_acc"] - rec["noise_acc"] <= bands["noise_drop_max"]
    assert rec["pgd_l2_acc"] <= rec["noise_l2_acc"] - bands["l2_gap_min"]
    # A targeted attack reaches one chosen class less often than an untargeted one reaches any.
    assert 0 < rec["targeted_success"] <= rec["untargeted_success"]

    # Accuracy against ε.
    grid = rec["eps_grid"]
    noise, fgsm, pgd = rec["noise_curve"], rec["fgsm_curve"], rec["pgd_curve"]
    assert len(grid) >= profile.eps_points and grid[0] == 0
    assert all(a < b for a, b in zip(grid, grid[1:])) and eps in grid and 2 * eps in grid
    assert len(noise) == len(fgsm) == len(pgd) == len(grid)
    assert noise[0] == fgsm[0] == pgd[0] == pytest.approx(rec["clean_acc"])
    assert fgsm[grid.index(eps)] == pytest.approx(rec["fgsm_acc"])  # FGSM is deterministic
    assert rec["pgd_acc_2eps"] == pgd[grid.index(2 * eps)]
    assert non_increasing(pgd, one), pgd
    assert all(p <= f + one for p, f in zip(pgd, fgsm)), (pgd, fgsm)
    assert rec["eps_max"] == grid[-1] and rec["pgd_acc_at_max"] == pgd[-1]
    assert pgd[-1] <= bands["pgd_at_max_max"]
    # An attack's accuracy never exceeds the clean accuracy: the clean input is in every ball.
    assert max(pgd + rec["pgd_l2_curve"]) <= rec["clean_acc"] + 1e-9
    assert rec["noise_acc_at_max"] == noise[-1] >= bands["noise_at_max_min"]
    grid_l2 = rec["eps_l2_grid"]
    noise_l2, one_step, pgd_l2 = rec["noise_l2_curve"], rec["pgd1_l2_curve"], rec["pgd_l2_curve"]
    assert len(noise_l2) == len(one_step) == len(pgd_l2) == len(grid_l2) >= profile.eps_points
    assert rec["eps_l2"] in grid_l2 and pgd_l2[grid_l2.index(rec["eps_l2"])] <= rec["pgd_l2_acc"] + 0.05
    assert non_increasing(pgd_l2, one) and all(p <= s + one for p, s in zip(pgd_l2, one_step))
    assert all(abs(a - rec["clean_acc"]) <= bands["noise_drop_max"] for a in noise_l2), noise_l2
    assert rec["pgd_l2_acc_at_max"] == pgd_l2[-1] <= 0.05

    # Black box: white-box PGD ≤ ZOO ≤ noise on ZOO's subset, within the query budget.
    zoo_eps, zoo, zoo_pgd, zoo_noise = (rec["zoo_eps"], rec["zoo_curve"], rec["zoo_pgd_curve"],
                                        rec["zoo_noise_curve"])
    assert zoo_eps[0] == 0 and eps in zoo_eps and len(zoo) == len(zoo_pgd) == len(zoo_eps)
    assert zoo[0] == zoo_pgd[0] == zoo_noise[0]
    for p, z, r in zip(zoo_pgd, zoo, zoo_noise):
        assert p <= z + one_zoo and z <= r + one_zoo, (zoo_pgd, zoo, zoo_noise)
    assert zoo[-1] < zoo_noise[-1] - 0.1  # at 2·eps ZOO really attacks
    k = zoo_eps.index(eps)
    assert (rec["zoo_acc"], rec["zoo_pgd_acc"], rec["zoo_noise_acc"]) == (zoo[k], zoo_pgd[k], zoo_noise[k])
    assert rec["zoo_pgd_acc"] < rec["zoo_acc"] <= rec["zoo_noise_acc"] + one_zoo
    assert rec["zoo_budget"] == profile.zoo_queries
    assert rec["zoo_iterations"] == (profile.zoo_queries - 1) // 257
    assert rec["zoo_mean_queries"][0] == 0
    assert all(0 < q <= rec["zoo_budget"] for q in rec["zoo_mean_queries"][1:])
    assert 0 < rec["zoo_queries_mean"] <= rec["zoo_queries_max"] <= rec["zoo_budget"]
    assert rec["zoo_success"] > 0 and 0 < rec["zoo_queries_success"] <= rec["zoo_budget"]
    # Transfer from a surrogate MLP: between white-box and clean, well below noise.
    assert rec["surrogate_clean_acc"] >= bands["clean_acc_min"] - 0.05
    assert rec["surrogate_self_acc"] < rec["transfer_acc"]
    assert rec["pgd_acc"] < rec["transfer_acc"] < rec["clean_acc"]
    assert rec["transfer_acc"] <= rec["noise_acc"] - bands["transfer_noise_gap_min"]
    assert rec["pgd_acc_2eps"] <= rec["transfer_acc_2eps"] < rec["transfer_acc"]

    # More steps and restarts change little; all sanity checks pass on the standard model.
    assert rec["more_steps"] == 4 * steps
    assert abs(rec["pgd_more_steps_acc"] - rec["pgd_base_acc"]) <= bands["steps_restarts_tol"]
    assert abs(rec["pgd_restarts_acc"] - rec["pgd_base_acc"]) <= bands["steps_restarts_tol"]
    assert abs(rec["pgd_base_acc"] - rec["check_ce_acc"]) <= 0.05  # with or without random start
    assert set(rec["sanity_standard"]) == CHECK_NAMES
    assert all(rec["sanity_standard"].values()) and rec["sanity_standard_all"] is True

    # Huge logits: robust-looking under CE, flagged, exposed by the CW margin.
    assert rec["scaled_clean_acc"] == rec["check_clean_acc"] >= rec["scaled_ce_acc"]
    assert rec["scaled_ce_acc"] >= rec["check_ce_acc"] + bands["looks_robust_min"]
    assert abs(rec["scaled_cw_acc"] - rec["check_cw_acc"]) <= one_check
    assert rec["scaled_cw_acc"] <= rec["check_ce_acc"] + 0.05
    assert {"gradients_nonzero", "loss_increases", "large_eps_breaks_model"} <= set(rec["sanity_scaled_failed"])
    assert not {"eval_mode", "deterministic", "outputs_are_logits"} & set(rec["sanity_scaled_failed"])
    assert rec["scaled_zero_gradients"] >= bands["zero_gradients_min"]
    assert "outputs_are_logits" in rec["sanity_softmax_failed"]

    # Dropout left on: advlib is not fooled, the checks flag it, the naive loop is no better.
    assert rec["dropout_still_training"] is True
    assert rec["dropout_honest_train_mode"] == rec["dropout_honest_eval_mode"]
    assert {"eval_mode", "deterministic"} <= set(rec["sanity_dropout_failed"])
    naive = rec["dropout_naive_measured"]
    assert min(naive) == rec["dropout_naive_measured_min"] and max(naive) == rec["dropout_naive_measured_max"]
    reported = rec["dropout_naive_reported"]
    assert min(reported) == rec["dropout_naive_reported_min"] and max(reported) == rec["dropout_naive_reported_max"]
    assert sum(naive) / len(naive) >= rec["dropout_honest_eval_mode"] - one_check
    clean_train_mode = rec["dropout_naive_clean"]
    assert sum(clean_train_mode) / len(clean_train_mode) < rec["dropout_clean_acc"]
    assert len(set(clean_train_mode + reported)) > 1  # random answers

    # Early stopping: the same accuracy, fewer gradient evaluations (time recorded, not asserted).
    assert rec["cost_acc_early"] == rec["cost_acc_full"]
    assert rec["cost_grads_full"] == steps * restarts
    assert 0 < rec["cost_grads_early"] < rec["cost_grads_full"]
    assert rec["cost_grad_ratio"] == pytest.approx(rec["cost_grads_full"] / rec["cost_grads_early"])
    assert rec["cost_seconds_full"] > 0 and rec["cost_seconds_early"] > 0
    assert rec["cost_time_ratio"] == pytest.approx(rec["cost_seconds_full"] / rec["cost_seconds_early"])

    # Every exercise's solution passed its check.
    for exercise in EXERCISES:
        assert rec.get("exercise_" + exercise.replace(".", "_")) is True, f"exercise {exercise}"


def test_smoke_run_supports_the_chapter_claims(rec):
    assert rec["profile"] == "smoke"
    assert_claims(rec, SMOKE)


def test_smoke_run_used_the_offline_sample_of_real_digits(rec):
    assert rec["data_source"] == "sample"  # ADVLIB_OFFLINE=1 in tests: real digits, no download


@pytest.mark.book
def test_book_run_bands(book_records):
    """The bands of the run the book shows (cpu profile; the gpu run has more data)."""
    rec = book_records[NAME]
    assert rec["profile"] in ("cpu", "gpu")
    assert_claims(rec, CPU)


def test_the_claims_can_fail(rec):
    """The checker is not a rubber stamp."""
    noise_as_strong = dict(rec, noise_acc=rec["pgd_acc"])
    rising = dict(rec, pgd_curve=rec["pgd_curve"][:-1] + [rec["pgd_curve"][-2] + 0.1],
                  pgd_acc_at_max=rec["pgd_curve"][-2] + 0.1)
    zoo_over_budget = dict(rec, zoo_queries_max=rec["zoo_budget"] + 1)
    zoo_as_weak_as_noise = dict(rec, zoo_curve=rec["zoo_noise_curve"],
                                zoo_acc=rec["zoo_noise_acc"])
    transfer_no_better_than_noise = dict(rec, transfer_acc=rec["noise_acc"])
    fooled_by_scale = dict(rec, scaled_cw_acc=rec["scaled_ce_acc"])
    checks_blind = dict(rec, sanity_scaled_failed=[])
    dropout_unflagged = dict(rec, sanity_dropout_failed=["eval_mode"])
    mode_dependent = dict(rec, dropout_honest_train_mode=rec["dropout_honest_eval_mode"] + 0.1)
    early_stop_changes_answer = dict(rec, cost_acc_early=rec["cost_acc_full"] + one(rec))
    standard_fails_a_check = dict(rec, sanity_standard=dict(rec["sanity_standard"],
                                                            more_steps_change_little=False))
    unconverged = dict(rec, pgd_more_steps_acc=rec["pgd_acc"] - 0.1)
    unsolved = dict(rec, exercise_3_4=False)
    for bad in (noise_as_strong, rising, zoo_over_budget, zoo_as_weak_as_noise,
                transfer_no_better_than_noise, fooled_by_scale, checks_blind, dropout_unflagged,
                mode_dependent, early_stop_changes_answer, standard_fails_a_check, unconverged,
                unsolved):
        with pytest.raises(AssertionError):
            assert_claims(bad, SMOKE)


def one(rec):
    return 1 / rec["n_test"]


# --------------------------------------------------------------------------- advlib.training

def _blobs(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[0.2, 0.2], [0.8, 0.2], [0.5, 0.8]])
    x = (centres[y] + 0.08 * torch.randn((n, 2), generator=g)).clamp(0, 1)
    return x, y


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))


def test_train_learns_is_reproducible_and_leaves_eval_mode():
    x, y = _blobs()
    model = _mlp()
    history = train(model, x, y, 30, lr=1e-2, batch_size=32,
                    generator=torch.Generator().manual_seed(1))
    assert len(history) == 30 and history[-1] < 0.5 * history[0]
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        assert (model(x).argmax(dim=1) == y).float().mean() > 0.95
    again = _mlp()
    assert train(again, x, y, 30, lr=1e-2, batch_size=32,
                 generator=torch.Generator().manual_seed(1)) == history
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs"), ({"epochs": 1.5}, "epochs"), ({"batch_size": 0}, "batch_size"),
    ({"lr": 0.0}, "lr"), ({"lr": -1}, "lr")])
def test_train_rejects_bad_arguments(kwargs, message):
    x, y = _blobs(20)
    args = {"epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        train(_mlp(), x, y, args.pop("epochs"), **args)


def test_train_rejects_mismatched_data():
    x, y = _blobs(20)
    with pytest.raises(ValueError, match="class indices"):
        train(_mlp(), x, y[:10], 1)


def test_profiles_size_the_chapter():
    for name in advlib.PROFILES:
        p = advlib.get_profile(name)
        for field in ("cnn_epochs", "check_size", "zoo_examples", "zoo_queries"):
            assert isinstance(getattr(p, field), int) and getattr(p, field) > 0, (name, field)
        assert p.zoo_queries >= 257  # at least one ZOO iteration of 128 coordinates
        assert p.check_size <= (p.eval_size or p.check_size)
    smoke, cpu = advlib.get_profile("smoke"), advlib.get_profile("cpu")
    assert smoke.zoo_examples * smoke.zoo_queries < cpu.zoo_examples * cpu.zoo_queries


# --------------------------------------------------------------------------- exercise checks

def right_fgsm(model, x, y, eps):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def right_l2_step(x_adv, x, grad, alpha, eps):
    def norms(t):
        return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    delta = x_adv + alpha * grad / norms(grad) - x
    return (x + delta * (eps / norms(delta)).clamp(max=1)).clamp(0, 1)


def right_cw(z, y):
    others = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf"))
    return others.max(dim=1).values - z.gather(1, y[:, None]).squeeze(1)


def right_zo(loss_of_x, x, coords, h):
    flat = torch.zeros_like(x).flatten(1)
    rows = torch.arange(len(x))
    for j in range(coords.shape[1]):
        bump = torch.zeros_like(flat)
        bump[rows, coords[:, j]] = h
        bump = bump.view_as(x)
        flat[rows, coords[:, j]] = (loss_of_x(x + bump) - loss_of_x(x - bump)) / (2 * h)
    return flat.view_as(x)


def right_attack_anyway(model, x, y, eps):
    return attacks.pgd(model, x, y, eps, eps / 8, 20, loss="cw")


def wrong_zo_one_sided(loss_of_x, x, coords, h):
    flat = torch.zeros_like(x).flatten(1)
    rows = torch.arange(len(x))
    base = loss_of_x(x)
    for j in range(coords.shape[1]):
        bump = torch.zeros_like(flat)
        bump[rows, coords[:, j]] = h
        flat[rows, coords[:, j]] = (loss_of_x(x + bump.view_as(x)) - base) / h
    return flat.view_as(x)


def wrong_zo_extra_queries(loss_of_x, x, coords, h):
    loss_of_x(x)  # a wasted query per image
    return right_zo(loss_of_x, x, coords, h)


def wrong_l2_unguarded(x_adv, x, grad, alpha, eps):
    norm = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    delta = x_adv + alpha * grad / norm - x
    return (x + delta * (eps / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(max=1)).clamp(0, 1)


def wrong_l2_batch_norm(x_adv, x, grad, alpha, eps):
    delta = x_adv + alpha * grad / grad.norm() - x
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (x + delta * (eps / norms).clamp(max=1)).clamp(0, 1)


def wrong_ce_attack(model, x, y, eps):
    return attacks.pgd(model, x, y, eps, eps / 8, 20)


def wrong_naive_cw(model, x, y, eps):
    """CW margin, but the dropout model stays in train mode."""
    delta = torch.zeros_like(x)
    for _ in range(20):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(attacks.attack_loss(model(x + delta), y, "cw").sum(), delta)
        delta = (delta.detach() + eps / 8 * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def stub(*args):
    raise NotImplementedError("Exercise 3.N: your code here")


CASES = [  # check, exercise, right answer, wrong answers (each with a word its message must contain)
    (attacks.check_fgsm, "3.1", right_fgsm, [
        (lambda m, x, y, eps: right_fgsm(m, x, y, -eps), "down"),
        (lambda m, x, y, eps: attacks.fgsm(m, x, y, eps, clip=False), "clamp"),
        (lambda m, x, y, eps: attacks.fgsm(m, x, y, eps, loss="cw"), "sign"),
        (lambda m, x, y, eps: right_fgsm(m, x, y, eps / 2), "differ"),
    ]),
    (attacks.check_pgd_l2_step, "3.2", right_l2_step, [
        (wrong_l2_unguarded, "zero gradient"),
        (wrong_l2_batch_norm, "whole batch"),
        (lambda x_adv, x, g, a, e: (x_adv + a * g / g.flatten(1).norm(dim=1).clamp_min(1e-12)
                                    .view(-1, 1, 1, 1)).clamp(0, 1), "project"),
        (lambda x_adv, x, g, a, e: right_l2_step(x_adv, x, g, a / 2, e), "differs"),
    ]),
    (attacks.check_cw_loss, "3.3", right_cw, [
        (lambda z, y: -right_cw(z, y), "sign"),
        (lambda z, y: z.max(dim=1).values - z.gather(1, y[:, None]).squeeze(1), "leave the true class out"),
        (lambda z, y: z.masked_fill(F.one_hot(y, z.shape[1]).bool(), 0).max(dim=1).values
         - z.gather(1, y[:, None]).squeeze(1), "-inf"),
    ]),
    (attacks.check_zo_gradient, "3.4", right_zo, [
        (wrong_zo_one_sided, "symmetric"),
        (lambda f, x, c, h: attacks.zo_gradient(f, x, h=h, coords=None), "not queried"),
        (wrong_zo_extra_queries, "2 per coordinate"),
    ]),
    (attacks.check_attack_anyway, "3.5", right_attack_anyway, [
        (wrong_ce_attack, "CW margin"),
        (wrong_naive_cw, "eval mode"),
        (lambda m, x, y, eps: (x + 2 * eps).clamp(0, 1), "exceeds"),
    ]),
]


@pytest.mark.parametrize("check, exercise, right, wrongs", CASES, ids=[c[1] for c in CASES])
def test_exercise_checks(check, exercise, right, wrongs, capsys, monkeypatch):
    monkeypatch.delenv("ADVLIB_EXERCISES", raising=False)
    torch.manual_seed(0)  # dropout in exercise 3.5's model draws from the global generator
    key = "exercise_" + exercise.replace(".", "_")
    advlib.records._session.pop(key, None)
    assert check(stub) is False
    assert "not done yet" in capsys.readouterr().out
    for wrong, hint in wrongs:
        assert check(wrong) is False, hint
        out = capsys.readouterr().out
        assert f"✗ Exercise {exercise}" in out and hint in out, out
    assert key not in advlib.recorded()
    assert check(right) is True
    assert f"✓ Exercise {exercise}" in capsys.readouterr().out
    assert advlib.recorded()[key] is True


@pytest.mark.parametrize("check, exercise, right, wrongs", CASES, ids=[c[1] for c in CASES])
def test_exercise_checks_raise_in_strict_mode(check, exercise, right, wrongs, monkeypatch):
    monkeypatch.setenv("ADVLIB_EXERCISES", "strict")
    with pytest.raises(NotImplementedError):
        check(stub)
    with pytest.raises(AssertionError):
        check(wrongs[0][0])
    assert check(right) is True


def test_a_crashing_answer_is_reported_as_wrong(capsys, monkeypatch):
    monkeypatch.delenv("ADVLIB_EXERCISES", raising=False)
    assert attacks.check_cw_loss(lambda z, y: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    attacks.check_fgsm(right_fgsm)
    attacks.check_pgd_l2_step(right_l2_step)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------- robust ≤ clean

class _Threshold(nn.Module):
    """A step function of the mean pixel: class 1 above 0.5. Its input gradient is 0 everywhere,
    so PGD stays wherever its random start put it."""

    def forward(self, x):
        above = (x.flatten(1).mean(dim=1) > 0.5).float()
        return 10 * torch.stack([1 - above, above], dim=1) + 0 * x.flatten(1).sum(dim=1, keepdim=True)


def test_robust_accuracy_never_exceeds_clean_accuracy():
    """The clean input lies in every ε-ball: a random start that lands on a correctly classified
    point must not turn a misclassified example into a robust one (chapter 3 met this with the
    scaled-logits model, whose zero gradients leave PGD at its random start)."""
    from advlib.evaluation import accuracy, robust_accuracy

    model = _Threshold()
    x = torch.full((200, 1, 8, 8), 0.499)  # just below the threshold: all misclassified
    y = torch.ones(200, dtype=torch.long)
    assert accuracy(model, x, y) == 0
    start = attacks.pgd(model, x, y, 0.1, 0.01, 1, generator=torch.Generator().manual_seed(0))
    assert accuracy(model, start, y) > 0.2  # random starts land on the right side
    for restarts in (1, 3):
        table = robust_accuracy(model, x, y, "pgd", [0.05, 0.1], steps=5, restarts=restarts,
                                generator=torch.Generator().manual_seed(0))
        assert (table["accuracy"] == 0).all(), table["accuracy"].tolist()
