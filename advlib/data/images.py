"""The ``ImageData`` container and the stratified subsampling shared by the image loaders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclass(frozen=True, eq=False)
class ImageData:
    """An image classification data set, ready for PyTorch.

    ``x_*``: float32 tensors ``[N, 1, 28, 28]`` with values in ``[0, 1]``;
    ``y_*``: int64 class indices; ``source``: where the data came from ("official", "sample",
    "debian"); ``classes``: class names, indexed by label. Used from chapter 1 onward.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str
    classes: tuple

    def __repr__(self) -> str:
        return (
            f"ImageData(source={self.source!r}, x_train={tuple(self.x_train.shape)}, "
            f"x_test={tuple(self.x_test.shape)}, classes={len(self.classes)})"
        )


def stratified_indices(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices drawn without replacement, keeping class proportions (largest remainder).

    The result is shuffled. Every class keeps at least its proportional share rounded down.
    """
    labels = np.asarray(labels)
    if not 0 <= n <= len(labels):
        raise ValueError(f"cannot draw {n} of {len(labels)} examples")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    take = np.floor(exact).astype(int)
    remainder_order = np.argsort(-(exact - take), kind="stable")
    take[remainder_order[: n - take.sum()]] += 1
    chosen = [
        rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)
    ]
    return rng.permutation(np.concatenate(chosen))


def subsample(x: np.ndarray, y: np.ndarray, n: int | None, rng: np.random.Generator):
    """A stratified subsample of size ``n`` (all of it, in order, when ``n`` is None or larger)."""
    if n is None or n >= len(y):
        return x, y
    idx = stratified_indices(y, n, rng)
    return x[idx], y[idx]


def to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``[N, 28, 28]`` -> float32 ``[N, 1, 28, 28]`` in [0, 1]; labels -> int64."""
    images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.uint8)).unsqueeze(1)
    return images.float().div_(255.0), torch.from_numpy(np.asarray(y, dtype=np.int64).copy())


def make_image_data(train, test, source: str, classes: tuple, n_train, n_test, seed) -> ImageData:
    """Subsample (stratified, seeded) and convert to an :class:`ImageData`."""
    rng = np.random.default_rng(seed)
    x_tr, y_tr = to_tensors(*subsample(*train, n_train, rng))
    x_te, y_te = to_tensors(*subsample(*test, n_test, rng))
    return ImageData(x_tr, y_tr, x_te, y_te, source, tuple(classes))
