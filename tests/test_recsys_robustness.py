"""advlib.recsys robustness: perturbations of the embeddings have the stated per-row size, the
worst case hurts more than noise, and bad input is refused (chapter 5)."""
from __future__ import annotations

import pytest
import torch

from advlib import recsys as rs


@pytest.fixture(scope="module")
def trained():
    """A BPR model on MovieLens-100K after a few epochs (about a second)."""
    split = rs.random_split(rs.load_implicit("ml-100k"), seed=0)
    result = rs.train_bpr(split.train, split.n_users, split.n_items, epochs=12, seed=0)
    return split, result.model


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.25, 1.0])
def test_perturbations_have_the_per_row_size(trained, eps, relative):
    split, model = trained
    sizes = rs.row_eps(model, eps, relative)
    if relative:
        assert sizes == pytest.approx((eps * model.norms()[0], eps * model.norms()[1]))
    grads = rs.attack_gradient(model, split)
    for dp, dq in (rs.worst_case_perturbation(model, eps, grads, relative),
                   rs.random_perturbation(model, eps, relative)):
        assert dp.shape == model.user.shape and dq.shape == model.item.shape
        assert torch.allclose(dp.norm(dim=1), torch.full((model.n_users,), sizes[0]), atol=1e-4)
        touched = grads[1].norm(dim=1) > 0
        assert torch.allclose(dq.norm(dim=1)[touched], torch.full((int(touched.sum()),), sizes[1]),
                              atol=1e-4)


def test_worst_case_hurts_more_than_random_and_the_curve_starts_clean(trained):
    split, model = trained
    curve = rs.robustness_curve(model, split, [0.0, 0.5, 1.0], draws=2)
    assert curve["worst"][0] == curve["random"][0] == curve["clean"]
    assert curve["worst_drop"][0] == 0
    assert all(w > r + 0.05 for w, r in zip(curve["worst_drop"][1:], curve["random_drop"][1:]))
    assert curve["worst"][2] < curve["worst"][1] < curve["clean"]
    clean = rs.evaluate(model, rs.ranking_task(split, "test"))["ndcg"]
    assert curve["clean"] == pytest.approx(clean)


def test_the_training_gradient_of_a_trained_model_mostly_shrinks_the_embeddings(trained):
    """Why the chapter attacks with the test loss: the training loss's gradient is nearly
    anti-parallel to each row (weight decay balances it), and shrinking a user's row never
    changes that user's ranking."""
    split, model = trained
    grad_p, _ = rs.attack_gradient(model, split, "train", n_negatives=2)
    cos_train = torch.nn.functional.cosine_similarity(grad_p, model.user.detach(), dim=1).mean()
    grad_p, _ = rs.attack_gradient(model, split, "test")
    cos_test = torch.nn.functional.cosine_similarity(grad_p, model.user.detach(), dim=1).mean()
    assert cos_train < cos_test < 0


def test_perturbed_copy_leaves_the_model_alone(trained):
    _, model = trained
    before = model.user.detach().clone()
    dp, dq = rs.random_perturbation(model, 0.5)
    copy = model.perturbed(dp, dq)
    assert torch.equal(model.user, before)
    assert torch.allclose(copy.user, before + dp)
    with pytest.raises(ValueError, match="shapes"):
        model.perturbed(dp[:-1], dq)


def test_robustness_bad_input(trained):
    split, model = trained
    with pytest.raises(ValueError, match="eps"):
        rs.robustness_curve(model, split, [0.0, -0.5])
    with pytest.raises(ValueError, match="empty"):
        rs.robustness_curve(model, split, [])
    with pytest.raises(ValueError, match="attack"):
        rs.attack_gradient(model, split, "valid")
    with pytest.raises(ValueError, match="n_negatives"):
        rs.attack_gradient(model, split, n_negatives=0)
    with pytest.raises(ValueError, match="eps"):
        rs.random_perturbation(model, float("nan"))
