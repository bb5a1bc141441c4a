"""Chapter 2 (the min-max formulation): the chapter's claims, read back from what the notebook
recorded.

The test suite executes the chapter in the ``smoke`` profile (``records`` fixture, see
tests/conftest.py) and asserts ``SMOKE``. ``CPU`` holds the bands of the ``cpu`` run, the one the
book shows; they are asserted on the book's own run by ``make book`` (``test_book_run_bands``,
marked ``book``; skipped elsewhere).

The claims:

* the common recipe's update, gradient *ascent* on the parameters, raises the training loss at
  every step, and descent from the same start lowers it at every step;
* the recipe's worked example, corrected: every number exact (recomputed here by hand);
* the worked example redone: forward pass, gradient by hand = autograd, worst-case δ, robust loss,
  Danskin gradient = autograd through the closed form, one descent step that lowers the robust loss;
* Danskin: finite differences of the brute-force robust loss equal the gradient at the maximiser;
* the closed-form inner maximum of linear regression equals the numerical maximum (1024 corners
  for ℓ∞, projected ascent for ℓ2) and is attained by the returned perturbation;
* the coefficient paths shrink: the dual norm never grows along ε, everything is exactly zero from
  ε̄ on, the ℓ∞ path is sparse (lasso-like) while the ℓ2 path is all-or-nothing, and the last
  ℓ∞ survivor is the feature the data predict;
* on held-out patients the robust fit has a lower worst-case MSE than least squares at its training
  ε (both norms), at a small clean cost at most, and so does every fit of the path at its own ε;
* every exercise's solution passes its check.
"""
from __future__ import annotations

import pytest

import advlib

NAME = "02_minmax_formulation"

# The data (scikit-learn's bundled diabetes set, seeded split) are the same in every profile;
# the profiles differ in the optimiser's epochs and the resolution of the ε grids. Bands for
# optimisation results allow the optimiser's last step size; exact arithmetic is asserted exactly.
SMOKE = {
    "profile": "smoke",
    "ascent_growth_min": 1e3,  # loss after the ascent steps / loss at the start
    "descent_drop_min": 0.4,  # 1 - loss after the descent steps / loss at the start
    "danskin_gap_max": 1e-6,
    "closed_form_gap_max": 1e-9,
    "path_tolerance": 2e-3,  # growth of ‖θ‖ between grid points; |θ_j| beyond ε̄
    "sparse_levels_min": 2,  # distinct counts strictly between 0 and 10 along the ℓ∞ path
    "gain_linf_min": 0.05,  # least squares − robust, worst-case test MSE at EPS_TRAIN
    "gain_l2_min": 0.01,
    "clean_cost_max": 0.03,  # robust − least squares, clean test MSE
}
CPU = dict(SMOKE, profile="cpu", path_tolerance=1e-3, sparse_levels_min=4)
EXERCISES = ("2.1", "2.2", "2.3", "2.4")
REQUIRED = (
    "n_train", "n_test", "features", "ascent_steps", "ascent_losses", "descent_losses",
    "loss_start", "ascent_loss_end", "descent_loss_end",
    "recipe_prediction_theta0", "recipe_residual", "recipe_loss", "recipe_grad_of_constant",
    "recipe_grad", "recipe_ascent_loss", "recipe_descent_loss",
    "danskin_rel_gap", "danskin_grad_norm",
    "we_prediction", "we_residual", "we_loss", "we_grad", "we_grad_autograd", "we_delta",
    "we_residual_adv", "we_robust_loss", "we_robust_grad", "we_robust_grad_autograd",
    "we_theta_1", "we_robust_loss_after", "we_plain_loss_after", "we_robust_loss_ascent",
    "closed_form_gap_linf", "closed_form_gap_l2", "maximiser_gap",
    "near_threshold_nonzero", "survivor_feature", "predicted_survivor",
    "test_clean_std", "eps_train", "attack_grid", "std_coefficients",
    *(f"{key}_{norm}" for norm in ("linf", "l2") for key in (
        "eps_bar", "path_grid", "path_norm", "path_nonzero", "path_train_worst",
        "path_max_growth", "path_beyond_max_abs", "test_worst_std", "test_worst_robust",
        "test_clean_robust", "test_curve_std", "test_curve_robust", "path_test_worst_own",
        "path_test_worst_std")),
)


def exact(value, want):
    """Equal up to float rounding of a few operations (the numbers are exact decimals)."""
    return value == pytest.approx(want, abs=1e-12, rel=1e-12)


def worked_example():
    """The corrected worked example, recomputed here by hand: x = [1, 2], y = 2,
    θ0 = [0.5, 0.5], ε = α = 0.1, loss ½ (θ·x − y)², ℓ∞ threat model."""
    x, y, theta, eps, alpha = (1.0, 2.0), 2.0, (0.5, 0.5), 0.1, 0.1
    r = theta[0] * x[0] + theta[1] * x[1] - y  # -0.5
    delta = (-eps, -eps)  # r < 0, θ > 0: both coordinates down
    r_adv = r - eps * (abs(theta[0]) + abs(theta[1]))  # -0.6
    grad_robust = (r_adv * (x[0] + delta[0]), r_adv * (x[1] + delta[1]))  # (-0.54, -1.14)

    def robust(t):
        return 0.5 * (abs(t[0] * x[0] + t[1] * x[1] - y) + eps * (abs(t[0]) + abs(t[1]))) ** 2

    theta_1 = (theta[0] - alpha * grad_robust[0], theta[1] - alpha * grad_robust[1])
    theta_up = (theta[0] + alpha * grad_robust[0], theta[1] + alpha * grad_robust[1])
    return {
        "we_prediction": 1.5, "we_residual": r, "we_loss": 0.5 * r ** 2,
        "we_grad": [r * x[0], r * x[1]], "we_delta": list(delta), "we_residual_adv": r_adv,
        "we_robust_loss": 0.5 * r_adv ** 2, "we_robust_grad": list(grad_robust),
        "we_theta_1": list(theta_1), "we_robust_loss_after": robust(theta_1),
        "we_plain_loss_after": 0.5 * (theta_1[0] * x[0] + theta_1[1] * x[1] - y) ** 2,
        "we_robust_loss_ascent": robust(theta_up),
    }


def assert_claims(rec: dict, bands: dict) -> None:
    """All of the chapter's claims for one run; ``bands`` is SMOKE or CPU."""
    missing = [name for name in REQUIRED if name not in rec]
    assert not missing, f"not recorded: {missing}"
    profile = advlib.get_profile(bands["profile"])

    # The data: all 442 patients, a 70/30 split, ten features.
    assert rec["n_train"] + rec["n_test"] == 442 and rec["n_test"] == 133
    assert len(rec["features"]) == 10

    # Error 2: ascent on the parameters raises the loss at every step; descent lowers it.
    up, down = rec["ascent_losses"], rec["descent_losses"]
    assert len(up) == len(down) == rec["ascent_steps"] + 1
    assert up[0] == down[0] == rec["loss_start"]
    assert up[-1] == rec["ascent_loss_end"] and down[-1] == rec["descent_loss_end"]
    assert all(b > a for a, b in zip(up, up[1:])), up
    assert all(b < a for a, b in zip(down, down[1:])), down
    assert rec["ascent_loss_end"] >= bands["ascent_growth_min"] * rec["loss_start"]
    assert rec["descent_loss_end"] <= (1 - bands["descent_drop_min"]) * rec["loss_start"]

    # Error 3: the recipe's worked example, each number corrected.
    assert rec["recipe_prediction_theta0"] == 0.0  # θ0 = [0, 0] predicts 0
    assert exact(rec["recipe_residual"], 0.5 * 1 + 0.5 * 2 - 1.2 - 1.8) and exact(rec["recipe_residual"], -1.5)
    assert exact(rec["recipe_loss"], 1.125)
    assert rec["recipe_grad_of_constant"] == [0.0, 0.0]
    assert all(exact(g, w) for g, w in zip(rec["recipe_grad"], (-1.5, -3.0)))
    assert exact(rec["recipe_ascent_loss"], 0.5 * (0.35 * 1 + 0.2 * 2 - 3) ** 2)
    assert exact(rec["recipe_descent_loss"], 0.5 * (0.65 * 1 + 0.8 * 2 - 3) ** 2)
    assert rec["recipe_ascent_loss"] > rec["recipe_loss"] > rec["recipe_descent_loss"]

    # The worked example redone: every number exact, autograd agrees, descent lowers the loss.
    for name, want in worked_example().items():
        got = rec[name]
        assert (all(exact(g, w) for g, w in zip(got, want)) if isinstance(want, list)
                else exact(got, want)), (name, got, want)
    assert all(exact(g, w) for g, w in zip(rec["we_grad_autograd"], rec["we_grad"]))
    assert all(exact(g, w) for g, w in zip(rec["we_robust_grad_autograd"], rec["we_robust_grad"]))
    assert rec["we_robust_loss"] > rec["we_loss"]  # the worst case is worse than clean
    assert rec["we_robust_loss_after"] < rec["we_robust_loss"] < rec["we_robust_loss_ascent"]

    # Danskin: the gradient of the worst case is the gradient at the maximiser.
    assert rec["danskin_grad_norm"] > 1e-3  # a real gradient, not two zeros that agree
    assert 0 <= rec["danskin_rel_gap"] <= bands["danskin_gap_max"]

    # The closed form is the maximum, and the returned perturbation attains it.
    for gap in ("closed_form_gap_linf", "closed_form_gap_l2", "maximiser_gap"):
        assert 0 <= rec[gap] <= bands["closed_form_gap_max"], gap

    # The coefficient paths shrink, to exactly zero from ε̄ on.
    tol = bands["path_tolerance"]
    assert 0 < rec["eps_bar_linf"] < rec["eps_bar_l2"] <= 10 ** 0.5 * rec["eps_bar_linf"]
    for norm in ("linf", "l2"):
        grid, size = rec[f"path_grid_{norm}"], rec[f"path_norm_{norm}"]
        nonzero, worst = rec[f"path_nonzero_{norm}"], rec[f"path_train_worst_{norm}"]
        eps_bar = rec[f"eps_bar_{norm}"]
        assert len(grid) == len(size) == len(nonzero) == len(worst) == 2 * profile.eps_points - 1
        assert grid[0] == 0 and grid[-1] == pytest.approx(1.2 * eps_bar)
        assert all(b > a for a, b in zip(grid, grid[1:]))
        assert rec[f"path_max_growth_{norm}"] == pytest.approx(max(b - a for a, b in zip(size, size[1:])))
        assert rec[f"path_max_growth_{norm}"] <= tol, (norm, size)
        assert size[0] > 0.5 and size[-1] == 0
        assert rec[f"path_beyond_max_abs_{norm}"] <= tol
        beyond = [e >= eps_bar * (1 - 1e-9) for e in grid]
        assert any(beyond) and not all(beyond)
        assert [n == 0 for n in nonzero] == beyond, (norm, nonzero)
        assert nonzero[0] == 10
        # the optimal worst-case training MSE grows with ε, to the variance of y at θ = 0
        assert all(b >= a - 1e-6 for a, b in zip(worst, worst[1:])), worst
        assert worst[-1] == pytest.approx(1.0, rel=1e-9)  # standardised training target
    # ℓ∞ is lasso-like: coefficients leave one by one; ℓ2 drops them all at once.
    levels = {n for n in rec["path_nonzero_linf"] if 0 < n < 10}
    assert len(levels) >= bands["sparse_levels_min"], rec["path_nonzero_linf"]
    assert set(rec["path_nonzero_l2"]) == {0, 10}, rec["path_nonzero_l2"]
    assert rec["near_threshold_nonzero"] == [rec["survivor_feature"]]
    assert rec["survivor_feature"] == rec["predicted_survivor"]

    # On held-out patients: the robust fit is more robust at its training ε, for both norms.
    eps_train, attack = rec["eps_train"], rec["attack_grid"]
    assert len(attack) == 4 * profile.eps_points - 3 and attack[0] == 0
    assert attack[-1] == pytest.approx(3 * eps_train)
    for norm, gain in (("linf", "gain_linf_min"), ("l2", "gain_l2_min")):
        standard, robust = rec[f"test_worst_std_{norm}"], rec[f"test_worst_robust_{norm}"]
        assert standard - robust >= bands[gain], (norm, standard, robust)
        assert rec[f"test_clean_robust_{norm}"] - rec["test_clean_std"] <= bands["clean_cost_max"]
        curve_std, curve_rob = rec[f"test_curve_std_{norm}"], rec[f"test_curve_robust_{norm}"]
        assert curve_std[0] == pytest.approx(rec["test_clean_std"])
        assert curve_rob[0] == pytest.approx(rec[f"test_clean_robust_{norm}"])
        assert all(b >= a for a, b in zip(curve_std, curve_std[1:]))
        assert all(b >= a for a, b in zip(curve_rob, curve_rob[1:]))
        above = [i for i, e in enumerate(attack) if e >= eps_train]
        assert all(curve_rob[i] < curve_std[i] for i in above)
        gaps = [curve_std[i] - curve_rob[i] for i in above]
        assert gaps[-1] > gaps[0]  # the gap widens with the attack radius
        # every fit of the path, attacked at its own training ε, beats least squares there
        own, std = rec[f"path_test_worst_own_{norm}"], rec[f"path_test_worst_std_{norm}"]
        assert own[0] == pytest.approx(std[0])
        assert all(o < s for o, s in zip(own[1:], std[1:])), (norm, own, std)
    serum = rec["std_coefficients"][4:]  # s1 … s6: opposite signs on correlated features
    assert min(serum) < 0 < max(serum)

    # Every exercise's solution passed its check.
    for exercise in EXERCISES:
        assert rec.get("exercise_" + exercise.replace(".", "_")) is True, f"exercise {exercise}"


def test_smoke_run_supports_the_chapter_claims(rec):
    assert rec["profile"] == "smoke"
    assert_claims(rec, SMOKE)


@pytest.mark.book
def test_book_run_bands(book_records):
    """The bands of the run the book shows (cpu profile; the gpu run has more grid points)."""
    rec = book_records[NAME]
    assert rec["profile"] in ("cpu", "gpu")
    assert_claims(rec, CPU)


def test_the_claims_can_fail(rec):
    """The checker is not a rubber stamp: a loss that goes down under the recipe's ascent, the
    recipe's own arithmetic, a Danskin gap, a closed form that misses the maximum, a path that
    grows, a robust fit no better than least squares, or a failed exercise is rejected."""
    up, size = rec["ascent_losses"], rec["path_norm_linf"]
    grows = size[:2] + [size[1] + 0.01] + size[3:]
    bad_runs = [
        dict(rec, ascent_losses=rec["descent_losses"], ascent_loss_end=rec["descent_loss_end"]),
        dict(rec, recipe_residual=-0.3, recipe_loss=0.045),
        dict(rec, recipe_grad_of_constant=[0.045, 0.045]),
        dict(rec, we_delta=[0.1, 0.1]),
        dict(rec, we_robust_loss_after=rec["we_robust_loss_ascent"]),
        dict(rec, danskin_rel_gap=0.05),
        dict(rec, closed_form_gap_l2=0.01),
        dict(rec, path_norm_linf=grows,
             path_max_growth_linf=max(b - a for a, b in zip(grows, grows[1:]))),
        dict(rec, path_nonzero_l2=rec["path_nonzero_linf"]),
        dict(rec, survivor_feature="age", near_threshold_nonzero=["age"]),
        dict(rec, test_worst_robust_linf=rec["test_worst_std_linf"]),
        dict(rec, test_worst_robust_l2=rec["test_worst_std_l2"] + 0.01),
        dict(rec, exercise_2_3=False),
        dict(rec, ascent_losses=up[:3] + [up[2] - 0.01] + up[4:]),
    ]
    for bad in bad_runs:
        with pytest.raises(AssertionError):
            assert_claims(bad, SMOKE)
