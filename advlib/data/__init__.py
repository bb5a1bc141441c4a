"""advlib.data: the course's data sets, with checksums, a cache and offline fallbacks.

Every loader prints one line saying which source it used. The cache lives in
``$ADVLIB_DATA_DIR``, else ``<checkout>/data`` in a source checkout, else ``~/.cache/advlib``;
``ADVLIB_OFFLINE=1`` forbids any network access.
"""

from ._paths import data_dir, is_offline
from .errors import ChecksumError, DataUnavailableError
from .images import ImageData
from .mnist import load_fashion_mnist, load_mnist
from .movielens import MovieLens, load_movielens_1m, load_movielens_100k

__all__ = [
    "ChecksumError",
    "DataUnavailableError",
    "ImageData",
    "MovieLens",
    "data_dir",
    "is_offline",
    "load_fashion_mnist",
    "load_mnist",
    "load_movielens_100k",
    "load_movielens_1m",
]
