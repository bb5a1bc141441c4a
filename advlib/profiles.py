"""Run profiles: the one place where the size of every experiment is defined.

A notebook's ``parameters`` cell sets ``PROFILE`` to one of ``"smoke"``, ``"cpu"``,
``"gpu"`` or ``"auto"`` and asks :func:`get_profile` for the sizes. Chapters read the
fields they need; nothing else in the course hard-codes a data-set size or an epoch count.

Used from chapter 1 onward.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

import torch

PROFILE_NAMES = ("smoke", "cpu", "gpu")
ENV_VAR = "ADVLIB_PROFILE"


@dataclass(frozen=True)
class Profile:
    """Sizes of a run. ``smoke``: seconds, for tests. ``cpu``: real results in minutes on a
    laptop (the book build). ``gpu``: full data and the literature's settings."""

    name: str
    mnist_train: int | None  # digits drawn (stratified) for training; None = all the source has
    mnist_test: int | None
    linear_epochs: int  # full-batch epochs for the linear models of chapters 1-2
    regression_epochs: int  # full-batch Adam epochs of the robust regression fits (chapter 2)
    eps_points: int  # points on an accuracy-against-epsilon curve
    eval_size: int | None  # test examples used in attack evaluations; None = all
    cnn_epochs: int  # epochs of standard training of the small MNIST CNN (chapter 3)
    check_size: int  # test examples for the sanity checks and false-robustness demos (chapter 3)
    zoo_examples: int  # test examples attacked by the query-only ZOO attack (chapter 3)
    zoo_queries: int  # ZOO's query budget per example (257 per iteration of 128 coordinates)
    progress: bool  # show progress bars
    rec_data: str  # recommender data set of chapters 5-6: "ml-100k" (offline) or "ml-1m"
    rec_dim: int  # embedding size of the matrix-factorisation recommenders (chapter 5)
    rec_batch: int  # BPR/APR mini-batch size (training triples)
    bpr_epochs: int  # most BPR epochs (early stopping on validation NDCG@10 usually ends sooner)
    apr_epochs: int  # most APR epochs after the converged BPR model
    apr_seeds: int  # training seeds of the BPR-versus-APR comparison
    poison_targets: int  # target items per group (cold, mid-popularity) of the attacks (chapter 6)
    poison_fractions: tuple  # fake profiles as fractions of the real users (chapter 6)
    at_epochs: int  # epochs of every model of the MNIST case study, standard and adversarial (ch. 4)
    at_steps: int  # PGD steps of PGD-AT and TRADES during training (chapter 4)
    autoattack_size: int  # test examples evaluated by AutoAttack; 0 = skip it (chapter 4)
    # Chapter 8 (SASRec): defaults are the cpu sizes, so every profile has them.
    seq_data: str = "ml-100k"  # data set of the sequence recommender
    seq_len: int = 50  # most recent items a sequence holds (max_len)
    seq_dim: int = 64  # SASRec's embedding size
    seq_blocks: int = 2  # self-attention blocks
    seq_heads: int = 1  # attention heads per block
    seq_batch: int = 128  # training sequences per batch
    seq_epochs: int = 10  # most epochs of plain training (early stopping on validation NDCG@10)
    seq_at_epochs: int = 3  # epochs of adversarial (and continued plain) training after that
    seq_seeds: int = 3  # training seeds of the with/without adversarial training comparison
    seq_attack_users: int = 200  # test users whose histories are attacked; 0 = all
    seq_substitutions: int = 3  # the attack's largest budget r (items substituted per user)
    text_dim: int = 64  # embedding size of the text-reading recommenders (chapter 7)
    text_epochs: int = 15  # most BPR epochs of MF, the content tower and the hybrid (chapter 7)
    text_apr_epochs: int = 5  # epochs of adversarial training in the text-embedding space
    text_seeds: int = 1  # training seeds of the MF / content / hybrid comparison
    text_targets: int = 2  # cold target items of the text-editing attack
    text_words: int = 2  # the attack's budget: words appended or substituted
    text_vocab: int = 100  # candidate words per vocabulary (all titles; each genre)
    text_shortlist: int = 8  # words tried exactly per step, chosen along the gradient
    text_benign: int = 60  # items whose benign edits calibrate and test the edit check


PROFILES = {
    "smoke": Profile("smoke", mnist_train=600, mnist_test=300, linear_epochs=60,
                     regression_epochs=800,
                     eps_points=6, eval_size=200, cnn_epochs=8, check_size=150,
                     zoo_examples=25, zoo_queries=4 * 257, progress=False,
                     rec_data="ml-100k", rec_dim=64, rec_batch=4096, bpr_epochs=25,
                     apr_epochs=15, apr_seeds=1,
                     poison_targets=5, poison_fractions=(0.05,),
                     at_epochs=10, at_steps=5, autoattack_size=0,
                     seq_len=30, seq_dim=32, seq_epochs=6, seq_at_epochs=1, seq_seeds=1,
                     seq_attack_users=100, seq_substitutions=2),
    "cpu": Profile("cpu", mnist_train=4000, mnist_test=1000, linear_epochs=300,
                   regression_epochs=3000, eps_points=13, eval_size=1000, cnn_epochs=10,
                   check_size=500, zoo_examples=100, zoo_queries=12 * 257, progress=True,
                   rec_data="ml-100k", rec_dim=64, rec_batch=4096, bpr_epochs=300,
                   apr_epochs=100, apr_seeds=3,
                   poison_targets=5, poison_fractions=(0.01, 0.03, 0.05),
                   text_epochs=300, text_apr_epochs=20, text_targets=5, text_words=3,
                   text_vocab=300, text_shortlist=12, text_benign=100,
                   at_epochs=15, at_steps=10, autoattack_size=100),
    "gpu": Profile("gpu", mnist_train=None, mnist_test=None, linear_epochs=300,
                   regression_epochs=3000, eps_points=21, eval_size=None, cnn_epochs=10,
                   check_size=2000, zoo_examples=500, zoo_queries=40 * 257, progress=True,
                   rec_data="ml-1m", rec_dim=64, rec_batch=16384, bpr_epochs=400,
                   apr_epochs=200, apr_seeds=5,
                   poison_targets=5, poison_fractions=(0.01, 0.03, 0.05),
                   text_epochs=300, text_apr_epochs=40, text_seeds=3, text_targets=10,
                   text_words=3, text_vocab=500, text_shortlist=32, text_benign=400,
                   at_epochs=20, at_steps=40, autoattack_size=1000,
                   seq_data="ml-1m", seq_len=200, seq_dim=50, seq_epochs=200, seq_at_epochs=20,
                   seq_seeds=5, seq_attack_users=0, seq_substitutions=5),
}


def resolve_profile_name(name: str = "auto") -> str:
    """Turn ``"auto"`` into a concrete profile name.

    ``auto`` honours the ``ADVLIB_PROFILE`` environment variable (the book build and the
    tests set it, so no papermill parameter cell is injected), else picks ``gpu`` when CUDA
    is available and ``cpu`` otherwise.
    """
    if not isinstance(name, str):
        raise TypeError(f"PROFILE must be a string, got {type(name).__name__}")
    name = name.strip().lower()
    if name == "auto":
        name = os.environ.get(ENV_VAR, "").strip().lower() or (
            "gpu" if torch.cuda.is_available() else "cpu")
    if name not in PROFILE_NAMES:
        raise ValueError(
            f"unknown profile {name!r}: choose one of {', '.join(PROFILE_NAMES)} or 'auto'")
    return name


def get_profile(name: str = "auto") -> Profile:
    """The :class:`Profile` for ``name`` (``"auto"`` resolved by :func:`resolve_profile_name`)."""
    return PROFILES[resolve_profile_name(name)]


def describe(profile: Profile) -> str:
    """One line a notebook prints so the reader knows the size of the run."""
    parts = [f"{f.name}={getattr(profile, f.name)}" for f in fields(profile) if f.name != "name"]
    return f"profile {profile.name!r}: " + ", ".join(parts)
