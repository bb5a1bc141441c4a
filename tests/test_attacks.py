"""advlib.attacks: invariants on random small models (hypothesis), guarantees that hold for
models convex in the input, exact agreement with torchattacks, ART and foolbox, the
zeroth-order gradient and bad-input errors. Tiny models on 1×8×8 inputs keep it fast."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from advlib import attacks as A
from advlib.attacks import attack_loss, fgsm, pgd, random_noise, zo_gradient, zoo

SHAPE = (1, 8, 8)
D = 64
CLASSES = 5
FAST = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread beats thread synchronisation, and it keeps the timing stable on a
    shared 2-core machine (where a second busy process stalls a 2-thread pool badly)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- small models

def make_model(kind: str, seed: int, classes: int = CLASSES, scale: float = 1.0) -> nn.Module:
    """A random small classifier on 1×8×8 inputs: "linear", "mlp" or "cnn" (eval mode)."""
    torch.manual_seed(seed)
    if kind == "linear":
        model = nn.Sequential(nn.Flatten(), nn.Linear(D, classes))
    elif kind == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(D, 32), nn.ReLU(), nn.Linear(32, classes))
    elif kind == "cnn":
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                              nn.Linear(4 * D, 16), nn.ReLU(), nn.Linear(16, classes))
    else:
        raise ValueError(kind)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model.eval()


def make_data(seed: int, n: int, classes: int = CLASSES, binary_frac: float = 0.3):
    """Pixels in [0, 1], a fraction of them exactly 0 or 1 (so clamping binds)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *SHAPE, generator=g)
    hard = torch.rand(n, *SHAPE, generator=g) < binary_frac
    x = torch.where(hard, (x > 0.5).float(), x)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def norm_of(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.reshape(delta.shape[0], -1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


# --------------------------------------------------------------------------- invariants

attack_cases = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "kind": st.sampled_from(["linear", "mlp", "cnn"]),
    "n": st.integers(1, 6),
    "norm": st.sampled_from(["linf", "l2"]),
    "eps": st.floats(0.0, 1.0),
    "alpha": st.floats(1e-3, 0.6),
    "steps": st.integers(1, 4),
    "restarts": st.integers(1, 3),
    "random_start": st.booleans(),
    "loss": st.sampled_from(["ce", "cw"]),
    "targeted": st.booleans(),
    "early_stop": st.booleans(),
})


@FAST
@given(case=attack_cases)
def test_pgd_stays_in_the_ball_and_the_image_range(case):
    model = make_model(case["kind"], case["seed"])
    x, y = make_data(case["seed"], case["n"])
    eps = case["eps"] * (3.0 if case["norm"] == "l2" else 1.0)
    restarts = case["restarts"] if case["random_start"] else 1
    x_adv = pgd(model, x, y, eps, case["alpha"], case["steps"], norm=case["norm"],
                restarts=restarts, random_start=case["random_start"], loss=case["loss"],
                targeted=case["targeted"], early_stop=case["early_stop"],
                generator=torch.Generator().manual_seed(case["seed"]))
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert (norm_of(x_adv - x, case["norm"]) <= eps + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@FAST
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["linear", "mlp", "cnn"]),
       eps=st.floats(0.0, 1.0), loss=st.sampled_from(["ce", "cw"]), targeted=st.booleans())
def test_fgsm_is_one_signed_step_of_size_eps(seed, kind, eps, loss, targeted):
    model = make_model(kind, seed)
    x, y = make_data(seed, 4)
    unclipped = fgsm(model, x, y, eps, loss=loss, targeted=targeted, clip=False)
    delta = unclipped - x
    # every pixel moves by exactly ±eps (or 0 where the gradient is exactly 0)
    assert torch.allclose(delta.abs()[delta != 0], torch.tensor(eps), atol=1e-6)
    clipped = fgsm(model, x, y, eps, loss=loss, targeted=targeted)
    assert torch.equal(clipped, unclipped.clamp(0, 1))
    assert (norm_of(clipped - x, "linf") <= eps + 1e-6).all()
    # FGSM is PGD's first step from x when the step reaches the edge of the ball
    if eps > 0:
        assert torch.equal(clipped, pgd(model, x, y, eps, 2 * eps, 1, random_start=False,
                                        loss=loss, targeted=targeted))


@FAST
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), eps=st.floats(0.0, 3.0),
       norm=st.sampled_from(["linf", "l2"]))
def test_random_noise_has_the_size_of_the_threat_model(seed, n, eps, norm):
    g = torch.Generator().manual_seed(seed)
    x = 0.25 + 0.5 * torch.rand(n, *SHAPE, generator=g)  # interior: clamping does not bind ...
    eps = eps / 12  # ... at these sizes (no pixel moves by more than 0.25)
    noisy = random_noise(x, eps, norm=norm, generator=g)
    delta = noisy - x
    if norm == "linf":
        assert torch.allclose(delta.abs(), torch.full_like(delta, eps), atol=1e-6)
    else:
        assert torch.allclose(norm_of(delta, "l2"), torch.full((n,), eps), atol=1e-5)
    edge, _ = make_data(seed, n, binary_frac=0.5)
    out = random_noise(edge, 4 * eps, norm=norm, generator=g)
    assert out.min() >= 0 and out.max() <= 1
    assert (norm_of(out - edge, norm) <= 4 * eps + 1e-6).all()


def test_l2_random_start_is_uniform_in_the_ball():
    """In d = 2 the squared radius of a uniform point of the disc is uniform on [0, 1]."""
    from scipy import stats

    x = torch.zeros(4000, 2)
    delta = A._random_start(x, 1.0, "l2", torch.Generator().manual_seed(0))
    r2 = (delta.norm(dim=1) ** 2).numpy()
    assert stats.kstest(r2, "uniform").pvalue > 1e-3
    angles = torch.atan2(delta[:, 1], delta[:, 0]).numpy()
    assert stats.kstest(angles, "uniform", args=(-math.pi, 2 * math.pi)).pvalue > 1e-3
    linf = A._random_start(torch.zeros(2000, 3), 0.3, "linf", torch.Generator().manual_seed(1))
    assert stats.kstest(linf.flatten().numpy(), "uniform", args=(-0.3, 0.6)).pvalue > 1e-3


# --------------------------------------------------------------------------- loss ordering

@FAST
@given(seed=st.integers(0, 10_000), eps=st.floats(0.01, 0.5), steps=st.integers(1, 6),
       alpha_frac=st.floats(0.05, 1.0))
def test_loss_ordering_on_a_convex_model_linf(seed, eps, steps, alpha_frac):
    """For a model whose cross-entropy is convex in the input (a linear softmax classifier),
    each ℓ∞ PGD step cannot lower the loss: the step moves every pixel along the sign of the
    gradient or not at all, and a convex function lies above its tangent. So, per example,
    clean ≤ FGSM and clean ≤ PGD-k ≤ PGD-(k+1)."""
    model = make_model("linear", seed, scale=3.0)
    x, y = make_data(seed, 8)
    alpha = alpha_frac * eps
    clean = ce(model, x, y)

    def at_least(a, b):  # a ≥ b up to float32 rounding
        return (a >= b - 1e-5 * (1 + b.abs())).all()

    assert at_least(ce(model, fgsm(model, x, y, eps), y), clean)
    k = ce(model, pgd(model, x, y, eps, alpha, steps, random_start=False), y)
    k1 = ce(model, pgd(model, x, y, eps, alpha, steps + 1, random_start=False), y)
    assert at_least(k, clean)
    assert at_least(k1, k)


@FAST
@given(seed=st.integers(0, 10_000), eps=st.floats(0.01, 0.5), steps=st.integers(1, 8),
       norm=st.sampled_from(["linf", "l2"]))
def test_pgd_at_least_fgsm_at_least_clean_on_a_two_class_linear_model(seed, eps, steps, norm):
    """With two classes and a linear model the loss depends on δ only through u·δ, so the
    worst case in the ℓ∞ ball (∩ [0, 1]) is FGSM's point, and PGD with steps·alpha ≥ eps reaches
    it: PGD ≥ FGSM ≥ clean per example, with PGD = FGSM up to rounding. In ℓ2 the single-step
    attack (one normalised step of length ε) is the unclamped optimum and PGD must not be worse
    than clean."""
    model = make_model("linear", seed, classes=2, scale=3.0)
    x, y = make_data(seed, 8, classes=2)
    clean = ce(model, x, y)
    tol = 1e-5
    if norm == "linf":
        one_step = ce(model, fgsm(model, x, y, eps), y)
        many = ce(model, pgd(model, x, y, eps, eps / steps, steps, random_start=False), y)
        assert (one_step >= clean - tol).all()
        assert (many >= one_step - tol).all()
        assert torch.allclose(many, one_step, atol=1e-4)  # both are the optimum
    else:
        interior = 0.3 + 0.4 * x  # no clamping: the ℓ2 ball lies inside [0, 1] for eps ≤ 0.3
        eps = min(eps, 0.3)
        clean = ce(model, interior, y)
        one_step = ce(model, pgd(model, interior, y, eps, eps, 1, norm="l2", random_start=False), y)
        many = ce(model, pgd(model, interior, y, eps, eps / steps, steps, norm="l2",
                             random_start=False), y)
        assert (one_step >= clean - tol).all()
        assert (many >= clean - tol).all()
        assert torch.allclose(many, one_step, atol=1e-4)  # the same point: the optimum


def test_pgd_beats_fgsm_and_clean_on_average_on_random_networks():
    """Not a theorem for non-convex nets; a fixed set of seeds where it plainly holds."""
    for seed in range(5):
        for kind in ("mlp", "cnn"):
            model = make_model(kind, seed)
            x, y = make_data(seed, 64)
            clean = ce(model, x, y).mean()
            one = ce(model, fgsm(model, x, y, 0.1), y).mean()
            many = ce(model, pgd(model, x, y, 0.1, 0.025, 10, random_start=False), y).mean()
            assert clean < one < many


# --------------------------------------------------------------------------- targeted

@FAST
@given(seed=st.integers(0, 10_000), eps=st.floats(0.01, 0.5), loss=st.sampled_from(["ce", "cw"]),
       steps=st.integers(1, 5))
def test_targeted_attack_raises_the_target_score_on_a_two_class_linear_model(seed, eps, loss, steps):
    """Two classes, linear model: the target's margin z_t − z_other is linear in δ and every
    signed step increases it (or leaves a pixel at the image boundary)."""
    model = make_model("linear", seed, classes=2, scale=3.0)
    x, _ = make_data(seed, 8, classes=2)
    target = torch.randint(0, 2, (8,), generator=torch.Generator().manual_seed(seed))

    def margin(z):
        return z.gather(1, target[:, None]).squeeze(1) - z.gather(1, 1 - target[:, None]).squeeze(1)

    with torch.no_grad():
        before = margin(model(x))
        after_fgsm = margin(model(fgsm(model, x, target, eps, loss=loss, targeted=True)))
        after_pgd = margin(model(pgd(model, x, target, eps, eps / 2, steps, loss=loss,
                                     targeted=True, random_start=False)))
    assert (after_fgsm >= before - 1e-5).all()
    assert (after_pgd >= before - 1e-5).all()


def test_targeted_pgd_raises_the_target_probability_on_random_networks():
    for seed in range(4):
        for kind in ("mlp", "cnn"):
            model = make_model(kind, seed, scale=2.0)
            x, _ = make_data(seed, 32)
            target = torch.randint(0, CLASSES, (32,), generator=torch.Generator().manual_seed(99))
            with torch.no_grad():
                before = model(x).softmax(1).gather(1, target[:, None]).squeeze(1)
                x_adv = pgd(model, x, target, 0.3, 0.05, 20, targeted=True,
                            generator=torch.Generator().manual_seed(seed))
                after_logits = model(x_adv)
                after = after_logits.softmax(1).gather(1, target[:, None]).squeeze(1)
                hit_before = (model(x).argmax(1) == target).float().mean()
            assert (after > before).all()
            assert (after_logits.argmax(1) == target).float().mean() >= hit_before + 0.3
            untargeted = pgd(model, x, target, 0.3, 0.05, 20, random_start=False)
            with torch.no_grad():
                assert (model(untargeted).softmax(1).gather(1, target[:, None]).squeeze(1)
                        < before).float().mean() > 0.8


# --------------------------------------------------------------------------- conventions

def test_zero_eps_returns_the_input_unchanged():
    model = make_model("cnn", 0)
    x, y = make_data(0, 5)
    outs = [fgsm(model, x, y, 0.0), pgd(model, x, y, 0.0, 0.1, 3),
            pgd(model, x, y, 0.0, 0.1, 3, norm="l2", restarts=2),
            random_noise(x, 0.0), random_noise(x, 0.0, norm="l2"), zoo(model, x, y, 0.0)]
    for out in outs:
        assert torch.equal(out, x) and out is not x


class ModeProbe(nn.Module):
    """Records the mode it ran in; dropout and batch norm make train mode visible."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(D, 16), nn.BatchNorm1d(16), nn.ReLU(),
                                  nn.Dropout(0.5), nn.Linear(16, CLASSES))
        self.seen = []

    def forward(self, x):
        self.seen.append(self.training)
        return self.body(x)


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "pgd_es", "zoo"])
def test_attacks_run_in_eval_mode_and_restore_every_module_mode(attack):
    model = ModeProbe()
    model.train()
    model.body[4].eval()  # a mixed state must come back exactly (dropout off, batch norm on)
    modes = [m.training for m in model.modules()]
    stats = model.body[2].running_mean.clone()
    x, y = make_data(1, 6)
    run = {"fgsm": lambda: fgsm(model, x, y, 0.1),
           "pgd": lambda: pgd(model, x, y, 0.1, 0.02, 3, restarts=2),
           "pgd_es": lambda: pgd(model, x, y, 0.1, 0.02, 3, early_stop=True, random_start=False),
           "zoo": lambda: zoo(model, x, y, 0.1, queries=300, coords_per_step=16)}[attack]
    out1, out2 = run(), run()
    assert model.seen and not any(model.seen), "the attack must evaluate the model in eval mode"
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(model.body[2].running_mean, stats)
    assert all(p.grad is None for p in model.parameters()), "attacks must not touch .grad"
    if attack in ("fgsm", "pgd_es"):
        assert torch.equal(out1, out2)  # eval mode: dropout is off, the attack is deterministic


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_attacks_work_inside_no_grad_and_inference_mode(context):
    model = make_model("cnn", 3)
    x, y = make_data(3, 6)
    expected = [fgsm(model, x, y, 0.1), pgd(model, x, y, 0.1, 0.02, 5, random_start=False),
                pgd(model, x, y, 0.5, 0.1, 5, norm="l2", random_start=False)]
    with context():
        x_in = x.clone()  # an inference tensor under inference_mode
        got = [fgsm(model, x_in, y, 0.1), pgd(model, x_in, y, 0.1, 0.02, 5, random_start=False),
               pgd(model, x_in, y, 0.5, 0.1, 5, norm="l2", random_start=False)]
    for a, b in zip(expected, got):
        assert torch.equal(a, b)
        assert not b.requires_grad


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_generator_makes_random_starts_reproducible(norm):
    model = make_model("mlp", 4)
    x, y = make_data(4, 6)

    def run(seed):
        return pgd(model, x, y, 0.3, 0.05, 3, norm=norm, restarts=2,
                   generator=torch.Generator().manual_seed(seed))

    state = torch.get_rng_state()
    a, b, c = run(7), run(7), run(8)
    assert torch.equal(torch.get_rng_state(), state), "a given generator leaves the global RNG alone"
    assert torch.equal(a, b) and not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(random_noise(x, 0.1, norm=norm, generator=g1),
                       random_noise(x, 0.1, norm=norm, generator=g2))
    za = zoo(model, x, y, 0.2, queries=200, coords_per_step=8, generator=torch.Generator().manual_seed(3))
    zb = zoo(model, x, y, 0.2, queries=200, coords_per_step=8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(za, zb)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_keep_the_worst_case_per_example(norm):
    """PGD with R restarts = R single runs drawing their starts from the same generator in turn,
    combined per example: the highest-loss misclassified result, else the highest loss."""
    model = make_model("mlp", 5, scale=2.0)
    x, y = make_data(5, 32)
    eps, alpha, steps, restarts = (0.03, 0.01, 4, 4) if norm == "linf" else (0.25, 0.08, 4, 4)
    got = pgd(model, x, y, eps, alpha, steps, norm=norm, restarts=restarts,
              generator=torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)
    runs = [pgd(model, x, y, eps, alpha, steps, norm=norm, generator=g) for _ in range(restarts)]
    with torch.no_grad():
        logits = torch.stack([model(r) for r in runs])  # [R, N, C]
    wrong = logits.argmax(2) != y
    losses = torch.stack([F.cross_entropy(z, y, reduction="none") for z in logits])
    expected = []
    for i in range(len(y)):
        pool = wrong[:, i] if wrong[:, i].any() else torch.ones_like(wrong[:, i])
        r = int(torch.where(pool, losses[:, i], float("-inf")).argmax())
        expected.append(runs[r][i])
    assert torch.allclose(got, torch.stack(expected), atol=1e-6)
    assert 0 < wrong.any(0).sum() < len(y), "the case must mix fooled and robust examples"


def test_early_stop_returns_the_first_misclassified_iterate():
    model = make_model("mlp", 6, scale=2.0)
    x, y = make_data(6, 32)
    steps = 8
    stopped = pgd(model, x, y, 0.1, 0.015, steps, random_start=False, early_stop=True)
    prefixes = [x] + [pgd(model, x, y, 0.1, 0.015, k, random_start=False) for k in range(1, steps + 1)]
    with torch.no_grad():
        wrong = torch.stack([model(p).argmax(1) != y for p in prefixes])  # [steps+1, N]
    first = torch.where(wrong.any(0), wrong.float().argmax(0), torch.tensor(steps))
    expected = torch.stack([prefixes[int(k)][i] for i, k in enumerate(first)])
    assert torch.allclose(stopped, expected, atol=1e-6)
    assert (first > 0).any() and (first < steps).any() and (~wrong.any(0)).any()


def test_attack_loss_values():
    z = torch.tensor([[2.0, 5.0, 1.0], [0.0, -1.0, 3.0]])
    y = torch.tensor([1, 0])
    assert torch.allclose(attack_loss(z, y, "cw"), torch.tensor([2.0 - 5.0, 3.0 - 0.0]))
    assert torch.allclose(attack_loss(z, y, "ce"), F.cross_entropy(z, y, reduction="none"))


# --------------------------------------------------------------------------- bad inputs

def _bad_calls():
    model = make_model("mlp", 0)
    x, y = make_data(0, 4)
    good = dict(eps=0.1, alpha=0.02, steps=3)
    cases = {
        "negative eps": lambda: pgd(model, x, y, -0.1, 0.02, 3),
        "nan eps": lambda: fgsm(model, x, y, float("nan")),
        "inf eps": lambda: pgd(model, x, y, float("inf"), 0.02, 3),
        "alpha zero": lambda: pgd(model, x, y, 0.1, 0.0, 3),
        "alpha negative": lambda: pgd(model, x, y, 0.1, -1.0, 3),
        "steps zero": lambda: pgd(model, x, y, 0.1, 0.02, 0),
        "steps float": lambda: pgd(model, x, y, 0.1, 0.02, 2.5),
        "restarts zero": lambda: pgd(model, x, y, restarts=0, **good),
        "restarts without random start": lambda: pgd(model, x, y, restarts=2, random_start=False, **good),
        "pixels above 1": lambda: pgd(model, x * 255, y, **good),
        "pixels below 0": lambda: fgsm(model, x - 1, y, 0.1),
        "nan pixels": lambda: fgsm(model, x.masked_fill(x > 0.9, float("nan")), y, 0.1),
        "integer images": lambda: fgsm(model, (x * 255).to(torch.uint8), y, 0.1),
        "labels too few": lambda: pgd(model, x, y[:3], **good),
        "labels 2-d": lambda: fgsm(model, x, y[:, None], 0.1),
        "float labels": lambda: fgsm(model, x, y.float(), 0.1),
        "label out of range": lambda: pgd(model, x, y + CLASSES, **good),
        "negative label": lambda: fgsm(model, x, y - CLASSES, 0.1),
        "unknown norm": lambda: pgd(model, x, y, norm="l1", **good),
        "unknown loss": lambda: pgd(model, x, y, loss="hinge", **good),
        "noise unknown norm": lambda: random_noise(x, 0.1, norm="inf"),
        "noise negative eps": lambda: random_noise(x, -0.1),
        "noise bad pixels": lambda: random_noise(x + 1, 0.1),
        "zoo zero budget": lambda: zoo(model, x, y, 0.1, queries=0),
        "zoo bad h": lambda: zoo(model, x, y, 0.1, h=0.0),
        "zoo unknown loss": lambda: zoo(model, x, y, 0.1, loss="mse"),
        "zoo labels": lambda: zoo(model, x, y[:2], 0.1),
        "zo_gradient coords": lambda: zo_gradient(lambda z: z.sum((1, 2, 3)), x, coords=D + 1),
        "model returns 1-d": lambda: fgsm(lambda z: z.sum((1, 2, 3)), x, y, 0.1),
    }
    return cases


@pytest.mark.parametrize("case", list(_bad_calls()))
def test_bad_arguments_raise_value_error(case):
    with pytest.raises(ValueError):
        _bad_calls()[case]()


# --------------------------------------------------------------------------- zeroth order

@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_zo_gradient_matches_the_true_gradient(kind):
    model = make_model(kind, 8, scale=1.5)
    x, y = make_data(8, 3, binary_frac=0.0)

    def loss_of_x(z):
        return F.cross_entropy(model(z), y.repeat(z.shape[0] // y.shape[0]), reduction="none")

    xg = x.clone().requires_grad_(True)
    (true,) = torch.autograd.grad(loss_of_x(xg).sum(), xg)
    estimate = zo_gradient(loss_of_x, x, h=1e-4)  # every coordinate
    cos = F.cosine_similarity(estimate.flatten(1), true.flatten(1), dim=1)
    assert (cos > 0.9).all(), cos
    some = zo_gradient(loss_of_x, x, h=1e-4, coords=16, generator=torch.Generator().manual_seed(0))
    assert ((some.flatten(1) != 0).sum(1) <= 16).all()
    picked = some.flatten(1) != 0
    assert torch.allclose(some.flatten(1)[picked], estimate.flatten(1)[picked], atol=1e-4)


class CountingModel(nn.Module):
    """Counts the inputs it is queried on and refuses gradients (a black box)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x):
        assert not torch.is_grad_enabled(), "a black-box attack must not ask for gradients"
        self.rows += x.shape[0]
        return self.model(x)


@pytest.mark.parametrize("budget,k", [(1, 8), (2, 8), (3, 8), (100, 8), (1000, 128), (514, 128)])
def test_zoo_counts_every_query_and_respects_the_budget(budget, k):
    model = CountingModel(make_model("mlp", 9, scale=0.3))  # weak logits: hard to fool quickly
    x, y = make_data(9, 5)
    x_adv, used = zoo(model, x, y, 0.05, queries=budget, coords_per_step=k, return_queries=True)
    assert (used <= budget).all()
    assert used.sum().item() == model.rows
    # an example stops early only when a queried point fooled the model; otherwise it spends
    # the budget down to less than one coordinate's worth (2 queries + 1)
    with torch.no_grad():
        fooled = model.model(x_adv).argmax(1) != y
    assert (fooled | (used >= budget - 2)).all()
    assert (norm_of(x_adv - x, "linf") <= 0.05 + 1e-6).all()


@pytest.mark.parametrize("norm,eps", [("linf", 0.25), ("l2", 2.0)])
def test_zoo_fools_a_model_using_outputs_only(norm, eps):
    model = make_model("mlp", 10, scale=2.0)
    x, y = make_data(10, 16)
    with torch.no_grad():
        y = model(x).argmax(1)  # start from correctly classified inputs
    black_box = CountingModel(model)
    x_adv, used = zoo(black_box, x, y, eps, norm=norm, queries=3000, coords_per_step=32,
                      generator=torch.Generator().manual_seed(0), return_queries=True)
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    assert fooled.float().mean() >= 0.75
    assert (norm_of(x_adv - x, norm) <= eps + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert used.max() <= 3000 and used[fooled].float().mean() < 3000  # fooled ones stopped early
    white = pgd(model, x, y, eps, eps / 8, 20, norm=norm, random_start=False)
    with torch.no_grad():
        assert (model(white).argmax(1) != y).float().mean() >= fooled.float().mean() - 0.2


# --------------------------------------------------------------------------- other libraries

def _library(name: str):
    """Import a test-only attack library (requirements/attack-libs.txt) or skip the test; a
    broken install (an ImportError inside the package) skips too, with its reason shown by -rs."""
    return pytest.importorskip(name, exc_type=ImportError)


@pytest.fixture(scope="module")
def lib_case():
    """A small CNN and a batch of 32 (a power of 2: a mean and a sum over the batch give
    gradients that differ by an exact factor, so the step directions are bit-identical)."""
    model = make_model("cnn", 12, classes=10, scale=1.5)
    x, y = make_data(12, 32, classes=10)
    return model, x, y


@pytest.fixture(scope="module")
def trained_case():
    """A small trained MLP on 4-class blobs, for the random-start comparisons."""
    g = torch.Generator().manual_seed(0)
    protos = 0.2 + 0.6 * torch.rand(4, *SHAPE, generator=g)
    y = torch.randint(0, 4, (1536,), generator=g)
    x = (protos[y] + 0.15 * torch.randn(1536, *SHAPE, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x[:1024]), y[:1024]).backward()
        opt.step()
    return model.eval(), x[1024:], y[1024:]


def _sampling_tol(p: float, n: int) -> float:
    """Four standard errors of a difference of two independent proportions, plus 1/n."""
    return 4 * math.sqrt(2 * max(p * (1 - p), 1 / n) / n) + 1 / n


def _acc(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_agrees_with_torchattacks(lib_case):
    torchattacks = _library("torchattacks")
    model, x, y = lib_case
    assert torch.allclose(fgsm(model, x, y, 0.1), torchattacks.FGSM(model, eps=0.1)(x, y), atol=1e-6)
    ours = pgd(model, x, y, 0.1, 0.01, 10, random_start=False)
    theirs = torchattacks.PGD(model, eps=0.1, alpha=0.01, steps=10, random_start=False)(x, y)
    assert (ours - theirs).abs().max() <= 1e-6
    ours = pgd(model, x, y, 1.0, 0.1, 10, norm="l2", random_start=False)
    theirs = torchattacks.PGDL2(model, eps=1.0, alpha=0.1, steps=10, random_start=False)(x, y)
    assert (ours - theirs).abs().max() <= 1e-6
    target = (y + 1) % 10
    attack = torchattacks.PGD(model, eps=0.1, alpha=0.01, steps=10, random_start=False)
    attack.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % 10)
    ours = pgd(model, x, target, 0.1, 0.01, 10, random_start=False, targeted=True)
    assert (ours - attack(x, y)).abs().max() <= 1e-6


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_early_stop_follows_the_torchattacks_trajectory(lib_case, norm):
    """With early stopping each example is the library's k-step result for the first k at
    which it is misclassified (or the full run)."""
    torchattacks = _library("torchattacks")
    model, x, y = lib_case
    eps, alpha, steps = (0.1, 0.01, 10) if norm == "linf" else (1.0, 0.1, 10)
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    prefixes = [x] + [cls(model, eps=eps, alpha=alpha, steps=k, random_start=False)(x, y)
                      for k in range(1, steps + 1)]
    with torch.no_grad():
        wrong = torch.stack([model(p).argmax(1) != y for p in prefixes])
    first = torch.where(wrong.any(0), wrong.float().argmax(0), torch.tensor(steps))
    expected = torch.stack([prefixes[int(k)][i] for i, k in enumerate(first)])
    ours = pgd(model, x, y, eps, alpha, steps, norm=norm, random_start=False, early_stop=True)
    assert (ours - expected).abs().max() <= 1e-6
    assert ((first > 0) & (first < steps)).any()


def test_random_start_agrees_with_torchattacks_within_sampling_error(trained_case):
    torchattacks = _library("torchattacks")
    model, x, y = trained_case
    n = len(y)
    ours = _acc(model, pgd(model, x, y, 0.15, 0.02, 10, generator=torch.Generator().manual_seed(0)), y)
    torch.manual_seed(0)
    theirs = _acc(model, torchattacks.PGD(model, eps=0.15, alpha=0.02, steps=10)(x, y), y)
    assert 0.05 < theirs < 0.95, "choose eps so that the comparison means something"
    assert abs(ours - theirs) <= _sampling_tol(theirs, n), (ours, theirs)
    # ℓ2 is compared with foolbox (below): torchattacks' PGDL2 draws its start with a radius
    # uniform in [0, eps], not uniformly in the ball, which starts closer to x.


def _art_classifier(model, classes):
    _library("art")
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=SHAPE,
                             nb_classes=classes, clip_values=(0.0, 1.0))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # ART and NumPy 2
def test_agrees_with_art(lib_case):
    _library("art")
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    model, x, y = lib_case
    clf = _art_classifier(model, 10)
    art_fgsm = FastGradientMethod(clf, norm=np.inf, eps=0.1, batch_size=32)
    assert np.abs(fgsm(model, x, y, 0.1).numpy() - art_fgsm.generate(x.numpy(), y.numpy())).max() <= 1e-6
    art_pgd = ProjectedGradientDescent(clf, norm=np.inf, eps=0.1, eps_step=0.01, max_iter=10,
                                       num_random_init=0, batch_size=32, verbose=False)
    ours = pgd(model, x, y, 0.1, 0.01, 10, random_start=False)
    assert np.abs(ours.numpy() - art_pgd.generate(x.numpy(), y.numpy())).max() <= 1e-6
    # ℓ2: ART clamps to [0, 1] before projecting onto the ball, torchattacks and foolbox (and
    # advlib) after. The two orders agree whenever clamping does not bind: interior pixels.
    interior = 0.3 + 0.4 * x
    art_l2 = ProjectedGradientDescent(clf, norm=2, eps=0.25, eps_step=0.05, max_iter=10,
                                      num_random_init=0, batch_size=32, verbose=False)
    ours = pgd(model, interior, y, 0.25, 0.05, 10, norm="l2", random_start=False)
    assert np.abs(ours.numpy() - art_l2.generate(interior.numpy(), y.numpy())).max() <= 1e-6


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # ART and NumPy 2
def test_random_start_agrees_with_art_within_sampling_error(trained_case):
    _library("art")
    from art.attacks.evasion import ProjectedGradientDescent

    model, x, y = trained_case
    clf = _art_classifier(model, 4)
    ours = _acc(model, pgd(model, x, y, 0.15, 0.02, 10, restarts=2,
                           generator=torch.Generator().manual_seed(1)), y)
    np.random.seed(1)
    attack = ProjectedGradientDescent(clf, norm=np.inf, eps=0.15, eps_step=0.02, max_iter=10,
                                      num_random_init=2, batch_size=512, verbose=False)
    theirs = _acc(model, torch.from_numpy(attack.generate(x.numpy(), y.numpy())), y)
    assert 0.05 < theirs < 0.95
    assert abs(ours - theirs) <= _sampling_tol(theirs, len(y)), (ours, theirs)


def test_agrees_with_foolbox(lib_case):
    fb = _library("foolbox")
    model, x, y = lib_case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fmodel = fb.PyTorchModel(model, bounds=(0, 1))
        _, theirs, _ = fb.attacks.FGSM()(fmodel, x, y, epsilons=0.1)
        assert (fgsm(model, x, y, 0.1) - theirs).abs().max() <= 1e-6
        _, theirs, _ = fb.attacks.LinfPGD(abs_stepsize=0.01, steps=10, random_start=False)(
            fmodel, x, y, epsilons=0.1)
        assert (pgd(model, x, y, 0.1, 0.01, 10, random_start=False) - theirs).abs().max() <= 1e-6
        _, theirs, _ = fb.attacks.L2PGD(abs_stepsize=0.1, steps=10, random_start=False)(
            fmodel, x, y, epsilons=1.0)
        ours = pgd(model, x, y, 1.0, 0.1, 10, norm="l2", random_start=False)
        assert (ours - theirs).abs().max() <= 1e-6


def test_random_start_agrees_with_foolbox_within_sampling_error(trained_case):
    """foolbox, like advlib and ART, starts uniformly in the ℓ2 ball."""
    fb = _library("foolbox")
    model, x, y = trained_case
    for norm, eps, alpha, cls in [("linf", 0.15, 0.02, fb.attacks.LinfPGD),
                                  ("l2", 1.0, 0.15, fb.attacks.L2PGD)]:
        ours = _acc(model, pgd(model, x, y, eps, alpha, 10, norm=norm,
                               generator=torch.Generator().manual_seed(2)), y)
        torch.manual_seed(2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, x_adv, _ = cls(abs_stepsize=alpha, steps=10)(fb.PyTorchModel(model, bounds=(0, 1)),
                                                           x, y, epsilons=eps)
        theirs = _acc(model, x_adv, y)
        assert 0.05 < theirs < 0.95, "choose eps so that the comparison means something"
        assert abs(ours - theirs) <= _sampling_tol(theirs, len(y)), (norm, ours, theirs)
