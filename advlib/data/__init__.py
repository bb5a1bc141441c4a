"""advlib.data: the course's data sets, with checksums, a cache and offline fallbacks.

Every loader prints one line saying which source it used. The cache lives in
``$ADVLIB_DATA_DIR``, else ``<checkout>/data`` in a source checkout, else ``~/.cache/advlib``;
``ADVLIB_OFFLINE=1`` forbids any network access.
"""

from ._paths import data_dir, is_offline
from .errors import ChecksumError, DataUnavailableError
from .images import ImageData
from .mnist import load_fashion_mnist, load_mnist

__all__ = [
    "ChecksumError",
    "DataUnavailableError",
    "ImageData",
    "data_dir",
    "is_offline",
    "load_fashion_mnist",
    "load_mnist",
]
