"""Small reference models for images in [0, 1], with the normalisation inside the model.

Defined in chapter 3 (the attack chapter trains :func:`mnist_cnn` and uses the two wrappers for
its false-robustness demonstrations); later chapters reuse the same architecture.

* :class:`Normalize` — ``(x − mean) / std`` as the model's first layer, so attacks work on
  pixels in [0, 1] and the ε of a threat model means what it says.
* :func:`mnist_cnn` — the small CNN of Wong, Rice & Kolter (2020, "Fast is better than free"):
  conv 16 → conv 32 → dense 100 → 10 logits.
* :func:`madry_cnn` — the larger CNN of Madry et al. (2018): conv 32 → pool → conv 64 → pool →
  dense 1024 → 10 logits (chapter 4's ``gpu`` profile).
* :class:`SoftmaxOutputs`, :class:`ScaledLogits` — *broken* wrappers that return probabilities or
  logits × 1e4. Accuracy is unchanged, but the cross-entropy gradient vanishes or underflows, so
  gradient attacks seem to fail: gradient masking, which :func:`advlib.evaluation.sanity_checks`
  flags.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["Normalize", "mnist_cnn", "madry_cnn", "SoftmaxOutputs", "ScaledLogits", "MNIST_MEAN", "MNIST_STD"]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class Normalize(nn.Module):
    """``(x − mean) / std`` per channel (a number or one value per channel), as a layer."""

    def __init__(self, mean, std):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if (std <= 0).any():
            raise ValueError("std must be > 0")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x):
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def mnist_cnn(num_classes: int = 10, normalize: bool = True) -> nn.Sequential:
    """Wong et al.'s small MNIST CNN for ``[N, 1, 28, 28]`` inputs in [0, 1]: two 4×4 stride-2
    convolutions (16 and 32 channels), a dense layer of 100 units, ``num_classes`` logits.
    With ``normalize`` the first layer standardises with the MNIST mean and std."""
    layers = [Normalize(MNIST_MEAN, MNIST_STD)] if normalize else []
    layers += [
        nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 100), nn.ReLU(),
        nn.Linear(100, num_classes),
    ]
    return nn.Sequential(*layers)


def madry_cnn(num_classes: int = 10) -> nn.Sequential:
    """Madry et al.'s MNIST CNN for ``[N, 1, 28, 28]`` inputs in [0, 1]: 5×5 convolutions with 32
    and 64 channels, each followed by 2×2 max-pooling, a dense layer of 1,024 units and
    ``num_classes`` logits (3.3 M parameters, 20× the small CNN)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 1024), nn.ReLU(),
        nn.Linear(1024, num_classes),
    )


class SoftmaxOutputs(nn.Module):
    """A model that returns ``softmax(model(x))`` instead of logits (a common bug). Same
    predictions; cross-entropy on top of probabilities is nearly flat."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.training = model.training  # a wrapper has no mode of its own

    def forward(self, x):
        return torch.softmax(self.model(x), dim=1)


class ScaledLogits(nn.Module):
    """A model that returns ``scale · model(x)`` (default 1e4). Same predictions; the softmax
    saturates, and the input gradient of the cross-entropy underflows to exactly 0."""

    def __init__(self, model: nn.Module, scale: float = 1e4):
        super().__init__()
        self.model = model
        self.scale = float(scale)
        self.training = model.training  # a wrapper has no mode of its own

    def forward(self, x):
        return self.model(x) * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"
