"""Near-duplicate detection for a build: MinHash signatures over character shingles, found with datasketch's LSH.

Deterministic: the permutations come from a fixed seed and count, and the build offers items in id order, so the
first of a set of near-copies is kept and each later one is reported with the id it duplicates. Only what finding
them needs is kept: a signature per kept item as a compact ``uint32`` array (``NUM_PERM`` x 4 bytes), and in the
LSH's tables one 8-byte digest per band instead of the band's bytes.
"""

import hashlib

import numpy as np
from datasketch import MinHash, MinHashLSH

from .formats import normalize

NUM_PERM = 64
SEED = 1
SHINGLE = 5  # characters: words for English, and Chinese, which has no spaces, alike


def _band_digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


SCHEME = "affine32"
_PERMUTATIONS = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME).permutations
_MULTIPLIER = np.uint64(0x100000001B3)


def shingle_hashes(text: str) -> np.ndarray:
    """A 32-bit hash of each distinct ``SHINGLE``-character shingle of the normalized text, computed with numpy
    (hashing each shingle in Python, as ``MinHash.update`` does, was most of a build's time)."""
    points = np.frombuffer(normalize(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(points) < SHINGLE:
        points = np.concatenate([points, np.zeros(SHINGLE - len(points), dtype=np.uint64)])
    windows = np.lib.stride_tricks.sliding_window_view(points, SHINGLE)
    with np.errstate(over="ignore"):
        hashed = np.zeros(len(windows), dtype=np.uint64)
        for column in range(SHINGLE):  # FNV-style: multiply and mix in each character, wrapping at 64 bits
            hashed = (hashed ^ windows[:, column]) * _MULTIPLIER
        hashed ^= hashed >> np.uint64(33)  # the splitmix64 finalizer spreads the bits before they are cut to 32
        hashed *= np.uint64(0xFF51AFD7ED558CCD)
        hashed ^= hashed >> np.uint64(33)
    return np.unique(hashed >> np.uint64(32))


def _as_is(value: int) -> int:
    return value


def signature(text: str) -> MinHash:
    """The text's MinHash (datasketch's ``affine32`` scheme, ``NUM_PERM`` permutations from ``SEED``) over its
    shingles' hashes."""
    minhash = MinHash(num_perm=NUM_PERM, hashfunc=_as_is, permutations=_PERMUTATIONS, scheme=SCHEME)
    minhash.update_batch(shingle_hashes(text).tolist())
    return minhash


class NearDuplicates:
    """Offer items in id order; ``offer`` returns the id of an earlier kept item the text is a near-copy of
    (estimated Jaccard similarity at least ``threshold``), or None, and then keeps the item."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM, hashfunc=_band_digest)
        self._signatures: dict[int, np.ndarray] = {}

    def offer(self, item_id: int, text: str) -> int | None:
        minhash = signature(text)
        values = minhash.hashvalues.astype(np.uint32)
        matches = [
            other
            for other in self._lsh.query(minhash)
            if float(np.mean(self._signatures[other] == values)) >= self.threshold
        ]
        if matches:
            return min(matches)
        self._lsh.insert(item_id, minhash, check_duplication=False)
        self._signatures[item_id] = values
        return None
