"""Benchmark: robust accuracy under PGD with advlib (with and without early stopping),
torchattacks, ART and foolbox, on the same model, data, ε, steps and restarts.

A script that prints a table, not a test. It trains Wong et al.'s small MNIST CNN for a few
epochs on the offline MNIST sample (sizes of the chosen profile), then times each library.

    python bench/bench_robust_accuracy.py                 # cpu profile sizes, ε = 0.1
    python bench/bench_robust_accuracy.py --profile smoke --repeats 1

Each timing is the best of ``--repeats`` runs, taken round robin over the implementations (a
shared machine makes single runs noisy): wall-clock seconds and the process's CPU seconds.
"Gradients" counts per-example forward+backward passes through the model, measured by a
wrapper in a separate, untimed run. The libraries are test-only dependencies
(requirements/attack-libs.txt); a missing one is skipped with a note.

Two accuracies per row: "robust acc." is what the library reports (for advlib's evaluation: an
example is broken when any PGD iterate fooled the model; for the others: the last iterate), and
"last-iterate acc." is the accuracy on the returned examples.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import advlib  # noqa: E402
from advlib.attacks import pgd  # noqa: E402
from advlib.evaluation import accuracy, robust_accuracy  # noqa: E402
from advlib.models import mnist_cnn  # noqa: E402


class Counting(nn.Module):
    """Counts per-example gradient evaluations (backward passes that reach the input)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.grads = 0

    def forward(self, x):
        out = self.model(x)
        if out.requires_grad:
            rows = x.shape[0]

            def hook(grad):
                self.grads += rows
                return grad

            out.register_hook(hook)
        return out


def load_data(profile, source):
    from advlib.data import load_mnist

    data = load_mnist(source=source, n_train=profile.mnist_train, n_test=profile.mnist_test)
    n_eval = profile.eval_size or len(data.y_test)
    return data.x_train, data.y_train, data.x_test[:n_eval], data.y_test[:n_eval]


def train(x, y, epochs, seed=0):
    """Standard training: Adam 1e-3, batch 100 (the setting of the course's anchors)."""
    torch.manual_seed(seed)
    model = mnist_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(100):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def batched(fn, x, y, batch_size):
    return torch.cat([fn(x[i:i + batch_size], y[i:i + batch_size])
                      for i in range(0, len(y), batch_size)])


def runners(model, X, Y, eps, alpha, steps, restarts, batch_size, seed):
    """name -> (function(model) -> (robust acc., last-iterate acc.)), for one threat model."""
    random_start = restarts > 0
    r = max(restarts, 1)
    out = {}

    def advlib_eval(early_stop):
        def run(m):
            kw = {"random_start": random_start, "early_stop": early_stop}
            if random_start:
                kw.update(restarts=r, generator=torch.Generator().manual_seed(seed))
            table = robust_accuracy(m, X, Y, "pgd", [eps], steps=steps, alpha=alpha,
                                    batch_size=batch_size, **kw)
            return float(table["accuracy"].iloc[0]), None
        return run

    def advlib_attack(m):
        kw = {"random_start": random_start}
        if random_start:
            kw.update(restarts=r, generator=torch.Generator().manual_seed(seed))
        x_adv = batched(lambda a, b: pgd(m, a, b, eps, alpha, steps, **kw), X, Y, batch_size)
        acc = accuracy(model, x_adv, Y)
        return acc, acc

    out["advlib robust_accuracy"] = advlib_eval(False)
    out["advlib robust_accuracy, early_stop"] = advlib_eval(True)
    out["advlib pgd + accuracy"] = advlib_attack

    try:
        import torchattacks

        def ta(m):
            torch.manual_seed(seed)
            attacks = [torchattacks.PGD(m, eps=eps, alpha=alpha, steps=steps,
                                        random_start=random_start) for _ in range(r)]
            attack = attacks[0] if r == 1 else torchattacks.MultiAttack(attacks)
            x_adv = batched(attack, X, Y, batch_size)
            acc = accuracy(model, x_adv, Y)
            return acc, acc
        out["torchattacks PGD" + (f" (MultiAttack ×{r})" if r > 1 else "")] = ta
    except ImportError:
        print("torchattacks not installed: skipped")

    try:
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier

        def art(m):
            np.random.seed(seed)
            clf = PyTorchClassifier(m, loss=nn.CrossEntropyLoss(), input_shape=tuple(X.shape[1:]),
                                    nb_classes=10, clip_values=(0.0, 1.0))
            attack = ProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=alpha,
                                              max_iter=steps, num_random_init=restarts,
                                              batch_size=batch_size, verbose=False)
            x_adv = torch.from_numpy(attack.generate(X.numpy(), Y.numpy()))
            acc = accuracy(model, x_adv, Y)
            return acc, acc
        out["ART ProjectedGradientDescent"] = art
    except ImportError:
        print("adversarial-robustness-toolbox not installed: skipped")

    try:
        import foolbox as fb

        if r == 1:
            def foolbox(m):
                torch.manual_seed(seed)
                fmodel = fb.PyTorchModel(m, bounds=(0, 1))
                attack = fb.attacks.LinfPGD(abs_stepsize=alpha, steps=steps,
                                            random_start=random_start)
                x_adv = batched(lambda a, b: attack(fmodel, a, b, epsilons=eps)[1], X, Y, batch_size)
                acc = accuracy(model, x_adv, Y)
                return acc, acc
            out["foolbox LinfPGD"] = foolbox
    except ImportError:
        print("foolbox not installed: skipped")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", help="smoke, cpu or gpu sizes (default cpu)")
    parser.add_argument("--source", default="sample", help="MNIST source (default: the offline sample)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.15],
                        help="one table pair per ε (default 0.1 0.15)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=3,
                        help="random restarts for the second table (0: skip it)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: stable on a shared machine)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    profile = advlib.get_profile(args.profile)

    x_train, y_train, X, Y = load_data(profile, args.source)
    start = time.perf_counter()
    model = train(x_train, y_train, args.epochs)
    print(f"trained {args.epochs} epochs in {time.perf_counter() - start:.1f} s; "
          f"clean accuracy {accuracy(model, X, Y):.3f} on {len(Y)} test digits")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); PGD-{args.steps} in "
          f"ℓ∞ with α = 2.5·ε/{args.steps}; batch {args.batch_size}; best of {args.repeats}")

    settings = [(eps, 0) for eps in args.eps]
    if args.restarts > 0:
        settings += [(eps, args.restarts) for eps in args.eps]
    for eps, restarts in settings:
        alpha = 2.5 * eps / args.steps
        title = (f"ε = {eps:g}, α = {alpha:g}, "
                 + (f"random start, {restarts} restarts" if restarts else "no random start"))
        runs = runners(model, X, Y, eps, alpha, args.steps, restarts, args.batch_size, seed=0)
        rows = {}
        for name, run in runs.items():
            counted = Counting(model).eval()
            robust, last = run(counted)
            rows[name] = {"implementation": name, "robust acc.": robust,
                          "last-iterate acc.": last, "seconds": float("inf"),
                          "CPU s": float("inf"), "gradients / example": counted.grads / len(Y)}
        for _ in range(args.repeats):  # round robin: a busy spell of the machine hits all alike
            for name, run in runs.items():
                wall, cpu = time.perf_counter(), time.process_time()
                run(model)
                row = rows[name]
                row["seconds"] = min(row["seconds"], time.perf_counter() - wall)
                row["CPU s"] = min(row["CPU s"], time.process_time() - cpu)
        table = pd.DataFrame(list(rows.values()))
        reference = table.loc[table["implementation"].str.startswith("torchattacks"), "seconds"]
        if len(reference):
            table["speed vs torchattacks"] = reference.iloc[0] / table["seconds"]
        print(f"\n## {title} (n = {len(Y)})\n")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="—"))


if __name__ == "__main__":
    main()
