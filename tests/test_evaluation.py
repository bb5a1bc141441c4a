"""advlib.evaluation: the robust-accuracy table, the sanity checks (which must pass on an honest
model and flag the chapter's broken ones) and early stopping (same numbers, less work).
A small MLP with dropout, trained in a second on 4-class blobs of 1×8×8 images."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from advlib import attacks as A  # noqa: E402
from advlib.evaluation import (TABLE_COLUMNS, accuracy, plot_robustness_curves,  # noqa: E402
                               robust_accuracy, sanity_checks)
from advlib.models import ScaledLogits, SoftmaxOutputs  # noqa: E402

SHAPE = (1, 8, 8)
EPS = 0.1


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread beats thread synchronisation, and it keeps the timing stable on a
    shared 2-core machine (where a second busy process stalls a 2-thread pool badly)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def honest():
    """(model in eval mode, x_test, y_test): an MLP with dropout trained on Gaussian blobs."""
    g = torch.Generator().manual_seed(0)
    protos = 0.2 + 0.6 * torch.rand(4, *SHAPE, generator=g)
    y = torch.randint(0, 4, (1400,), generator=g)
    x = (protos[y] + 0.2 * torch.randn(1400, *SHAPE, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(64, 4))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x[:1200]), y[:1200]).backward()
        opt.step()
    return model.eval(), x[1200:], y[1200:]


class Counting(nn.Module):
    """Counts examples through forward passes, and through backward passes (input gradients)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.forward_rows = 0
        self.backward_rows = 0

    def forward(self, x):
        out = self.model(x)
        self.forward_rows += x.shape[0]
        if out.requires_grad:
            rows = x.shape[0]

            def hook(grad):
                self.backward_rows += rows
                return grad

            out.register_hook(hook)
        return out


# --------------------------------------------------------------------------- accuracy

def test_accuracy_counts_correct_predictions_and_restores_the_mode(honest):
    model, x, y = honest
    with torch.no_grad():
        expected = (model(x).argmax(1) == y).float().mean().item()
    model.train()
    try:
        assert accuracy(model, x, y, batch_size=7) == pytest.approx(expected)
        assert model.training and model[3].training
    finally:
        model.eval()
    assert 0.9 < expected <= 1.0
    with pytest.raises(ValueError):
        accuracy(model, x, y[:-1])
    with pytest.raises(ValueError):
        accuracy(model, x * 255, y)
    with pytest.raises(ValueError):
        accuracy(model, x, y, batch_size=0)


# --------------------------------------------------------------------------- the table

def test_table_has_one_row_per_eps_and_the_threat_model(honest):
    model, x, y = honest
    eps = [0.0, 0.05, 0.1]
    table = robust_accuracy(model, x, y, "pgd", eps, steps=5, restarts=2,
                            generator=torch.Generator().manual_seed(0))
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == TABLE_COLUMNS
    assert table.shape == (3, len(TABLE_COLUMNS))
    assert table["eps"].tolist() == eps
    assert set(table["attack"]) == {"PGD"} and set(table["norm"]) == {"linf"}
    assert set(table["steps"]) == {5} and set(table["restarts"]) == {2}
    assert table["alpha"].tolist()[1:] == pytest.approx([2.5 * e / 5 for e in eps[1:]])
    assert set(table["n"]) == {len(y)}
    assert table["accuracy"].iloc[0] == pytest.approx(accuracy(model, x, y))
    assert table["accuracy"].between(0, 1).all()
    for attack, label, extra in [(A.fgsm, "FGSM", {}), ("noise", "noise", {"norm": "l2"}),
                                 ("zoo", "ZOO", {"queries": 300, "coords_per_step": 16})]:
        t = robust_accuracy(model, x[:40], y[:40], attack, [0.0, 0.2], **extra)
        assert t["attack"].tolist() == [label, label]
        assert t["accuracy"].iloc[0] == pytest.approx(accuracy(model, x[:40], y[:40]))
        assert list(t.columns[: len(TABLE_COLUMNS)]) == TABLE_COLUMNS
    zoo_table = robust_accuracy(model, x[:40], y[:40], "zoo", [0.2], queries=300,
                                coords_per_step=16)
    assert "queries" in zoo_table.columns and 0 < zoo_table["queries"].iloc[0] <= 300
    # a single eps, a custom alpha rule, and a user-written attack
    t = robust_accuracy(model, x, y, A.pgd, 0.1, steps=4, alpha=lambda e: e / 2, norm="l2")
    assert t.shape[0] == 1 and t["alpha"].iloc[0] == pytest.approx(0.05) and t["norm"].iloc[0] == "l2"

    def shift(model, x, y, eps):
        return (x + eps).clamp(0, 1)

    t = robust_accuracy(model, x, y, shift, [0.0, 0.3])
    assert t["attack"].iloc[0] == "shift" and t["accuracy"].iloc[0] == pytest.approx(accuracy(model, x, y))


def test_table_arguments_are_checked(honest):
    model, x, y = honest
    with pytest.raises(ValueError, match="steps"):
        robust_accuracy(model, x, y, "pgd", [0.1])
    with pytest.raises(ValueError, match="untargeted"):
        robust_accuracy(model, x, y, "pgd", [0.1], steps=3, targeted=True)
    with pytest.raises(ValueError):
        robust_accuracy(model, x, y, "deepfool", [0.1])
    with pytest.raises(ValueError):
        robust_accuracy(model, x, y, "pgd", [0.1, -0.1], steps=3)
    with pytest.raises(ValueError):
        robust_accuracy(model, x, y, "pgd", [], steps=3)
    with pytest.raises(ValueError):
        robust_accuracy(model, x, y, "fgsm", [0.1], batch_size=0)


@pytest.mark.parametrize("norm,grid", [("linf", [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5]),
                                       ("l2", [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0])])
def test_pgd_accuracy_does_not_increase_with_eps(honest, norm, grid):
    model, x, y = honest
    table = robust_accuracy(model, x, y, "pgd", grid, steps=10, norm=norm, random_start=False)
    acc = table["accuracy"].tolist()
    assert all(b <= a for a, b in zip(acc, acc[1:])), acc
    assert acc[0] > 0.9 and acc[-1] < 0.05, acc  # the curve really falls


def test_plot_draws_one_line_per_threat_model(honest):
    model, x, y = honest
    table = pd.concat([
        robust_accuracy(model, x, y, "pgd", [0.0, 0.1, 0.2], steps=5, random_start=False),
        robust_accuracy(model, x, y, "fgsm", [0.0, 0.1, 0.2]),
        robust_accuracy(model, x, y, "noise", [0.0, 0.1, 0.2], generator=torch.Generator().manual_seed(0)),
    ])
    ax = plot_robustness_curves(table)
    assert len(ax.lines) == 3
    labels = [line.get_label() for line in ax.lines]
    assert any(label.startswith("PGD-5") for label in labels) and "ℓ∞" in ax.get_xlabel()
    assert list(ax.lines[0].get_xdata()) == [0.0, 0.1, 0.2]
    with pytest.raises(ValueError):
        plot_robustness_curves(pd.DataFrame({"eps": [0.1]}))


# --------------------------------------------------------------------------- early stopping

@pytest.mark.parametrize("norm,eps,kwargs", [
    ("linf", 0.13, {"random_start": False}),
    ("linf", 0.13, {"restarts": 3}),
    ("l2", 0.9, {"restarts": 2}),
])
def test_early_stop_gives_the_same_table_with_fewer_gradients(honest, norm, eps, kwargs):
    model, x, y = honest
    tables, counts = [], []
    for early_stop in (False, True):
        counted = Counting(model)
        tables.append(robust_accuracy(counted, x, y, "pgd", [eps], steps=20, norm=norm,
                                      early_stop=early_stop, batch_size=64,
                                      generator=torch.Generator().manual_seed(5), **kwargs))
        counts.append((counted.forward_rows, counted.backward_rows))
    plain, stopped = tables
    pd.testing.assert_frame_equal(plain, stopped)
    robust = plain["accuracy"].iloc[0]
    assert 0.1 < robust < 0.9, "the setting must leave some examples robust and break others"
    restarts = kwargs.get("restarts", 1)
    assert counts[0][1] == 20 * restarts * len(y)  # every example, every step, every restart
    assert counts[1][1] < 0.7 * counts[0][1], counts
    assert counts[1][0] < counts[0][0]


def test_early_stopped_examples_are_misclassified(honest):
    model, x, y = honest
    x_adv = A.pgd(model, x, y, EPS, 0.0125, 20, random_start=False, early_stop=True)
    full = A.pgd(model, x, y, EPS, 0.0125, 20, random_start=False)
    table = robust_accuracy(model, x, y, "pgd", [EPS], steps=20, alpha=0.0125, random_start=False)
    # the early-stopped examples are exactly the broken ones; the plain last iterate can only
    # be correct more often (an iterate that fooled the model may be followed by one that does not)
    assert accuracy(model, x_adv, y) == pytest.approx(table["accuracy"].iloc[0])
    assert accuracy(model, full, y) >= accuracy(model, x_adv, y)


# --------------------------------------------------------------------------- sanity checks

CHECKS = ["eval_mode", "deterministic", "outputs_are_logits", "gradients_nonzero",
          "loss_increases", "pgd_beats_fgsm", "more_steps_change_little",
          "more_restarts_change_little", "white_box_beats_noise", "accuracy_falls_with_eps",
          "large_eps_breaks_model"]


def _checks(model, x, y, **kwargs):
    table = sanity_checks(model, x, y, EPS, steps=10, restarts=2,
                          generator=torch.Generator().manual_seed(0), **kwargs)
    assert list(table.columns) == ["check", "passed", "measured", "reference", "criterion"]
    assert table["check"].tolist() == CHECKS
    return dict(zip(table["check"], table["passed"])), table


def test_sanity_checks_pass_on_an_honest_model(honest):
    model, x, y = honest
    passed, table = _checks(model, x, y)
    assert all(passed.values()), table.to_string()
    assert table.attrs["all_passed"] is True
    numbers = dict(zip(table["check"], table["measured"]))
    assert 0.05 < numbers["pgd_beats_fgsm"] < 0.95  # the ε of the test is a meaningful one
    passed_l2, table_l2 = _checks(model, x, y, norm="l2")
    assert all(passed_l2.values()), table_l2.to_string()


def test_sanity_checks_flag_scaled_logits(honest):
    model, x, y = honest
    passed, table = _checks(ScaledLogits(model, 1e4), x, y)
    assert not table.attrs["all_passed"]
    for check in ("gradients_nonzero", "loss_increases", "large_eps_breaks_model"):
        assert not passed[check], (check, table.to_string())
    assert passed["eval_mode"] and passed["outputs_are_logits"]


def test_sanity_checks_flag_softmax_outputs(honest):
    model, x, y = honest
    passed, table = _checks(SoftmaxOutputs(model), x, y)
    assert not passed["outputs_are_logits"], table.to_string()
    assert not table.attrs["all_passed"]


def test_sanity_checks_flag_a_model_left_in_train_mode_with_dropout(honest):
    model, x, y = honest
    model.train()
    try:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        passed, table = _checks(model, x, y)
        assert model.training, "the checks must hand the model back in its own mode"
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    finally:
        model.eval()
    assert not passed["eval_mode"] and not passed["deterministic"], table.to_string()
    assert "Dropout" in table.loc[table["check"] == "eval_mode", "criterion"].item()


def test_sanity_checks_flag_a_randomised_model_in_eval_mode(honest):
    """Noise that eval mode does not switch off (a "randomised defence") is caught too."""
    model, x, y = honest

    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, z):
            return self.model((z + 0.05 * torch.randn_like(z)).clamp(0, 1))

    passed, table = _checks(Noisy().eval(), x, y)
    assert not passed["deterministic"] and passed["eval_mode"], table.to_string()


def test_sanity_checks_restore_batch_norm_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.Linear(16, 3)).train()
    x = torch.rand(50, *SHAPE)
    y = torch.randint(0, 3, (50,))
    before = model[2].running_mean.clone()
    sanity_checks(model, x, y, 0.1, steps=2, restarts=2)
    assert torch.equal(model[2].running_mean, before) and model.training
    with pytest.raises(ValueError):
        sanity_checks(model, x, y, 0.0)
    with pytest.raises(ValueError):
        sanity_checks(model, x, y, 0.1, norm="l1")
    assert math.isfinite(before.sum().item())
