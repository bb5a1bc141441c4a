"""advlib: the small, tested helper package of the course
"Adversarial Training for Robust Recommender Systems".

Each module names the chapter that teaches it. The core used by every chapter:

* :func:`get_profile` / :class:`Profile`: the size of every run (smoke / cpu / gpu / auto);
* :func:`set_seed`, :func:`device`, :func:`progress`: reproducibility, hardware, progress bars;
* :func:`record` / :func:`read_records`: measured numbers that the book quotes and tests assert.
"""
from .profiles import PROFILES, Profile, describe, get_profile, resolve_profile_name
from .records import read_records, record, recorded
from .runtime import NoGPUWarning, device, progress, set_seed

__version__ = "0.1.0"
__all__ = [
    "PROFILES", "Profile", "describe", "get_profile", "resolve_profile_name",
    "read_records", "record", "recorded",
    "NoGPUWarning", "device", "progress", "set_seed",
]
