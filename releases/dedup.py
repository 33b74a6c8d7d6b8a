"""Near-duplicate detection for a build: datasketch MinHash signatures over character shingles, found by locality
sensitive hashing with the bands and rows datasketch's ``MinHashLSH`` chooses for the threshold.

Deterministic: the permutations come from a fixed seed and count, and the build offers items in id order, so the
first of a set of near-copies is kept and each later one is reported with the id it duplicates.

The index is this module's, not ``MinHashLSH``'s own tables: those keep, per item and band, a set, a bytes object
and the key's list of band hashes, about 1.5 KB an item (1.5 GB for a million dialogues). Here an item kept costs
one dict entry per band (an int digest to its position) and its signature's low 16 bits per permutation (128
bytes, in numpy blocks), which estimate the Jaccard similarity as well as the full values do: two different 32-bit
values share their low 16 bits once in 65,536 (b-bit minwise hashing), so the estimate rises by under 0.00002.
"""

import hashlib
from array import array

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


BLOCK = 4096  # signatures a numpy block holds


class NearDuplicates:
    """Offer items in id order; ``offer`` returns the id of an earlier kept item the text is a near-copy of
    (estimated Jaccard similarity at least ``threshold``), or None, and then keeps the item."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)  # for its choice of bands and rows only
        self.bands, self.rows = lsh.b, lsh.r
        # Per band: digest -> position of the item kept with it, or a list of positions when several share it.
        self._index: list[dict[int, int | list[int]]] = [{} for _ in range(self.bands)]
        self._blocks: list[np.ndarray] = []
        self._ids = array("q")

    def _digests(self, values: np.ndarray) -> list[int]:
        return [
            int.from_bytes(_band_digest(values[b * self.rows : (b + 1) * self.rows].tobytes()), "little")
            for b in range(self.bands)
        ]

    def offer(self, item_id: int, text: str) -> int | None:
        values = signature(text).hashvalues.astype(np.uint32)
        low = values.astype(np.uint16)
        digests = self._digests(values)
        seen: set[int] = set()
        for band, digest in zip(self._index, digests, strict=True):
            found = band.get(digest)
            if found is not None:
                seen.update(found if isinstance(found, list) else (found,))
        matches = [
            self._ids[position]
            for position in sorted(seen)
            if float(np.mean(self._blocks[position // BLOCK][position % BLOCK] == low)) >= self.threshold
        ]
        if matches:
            return min(matches)
        position = len(self._ids)
        if position % BLOCK == 0:
            self._blocks.append(np.zeros((BLOCK, NUM_PERM), dtype=np.uint16))
        self._blocks[-1][position % BLOCK] = low
        self._ids.append(item_id)
        for band, digest in zip(self._index, digests, strict=True):
            found = band.get(digest)
            if found is None:
                band[digest] = position
            elif isinstance(found, list):
                found.append(position)
            else:
                band[digest] = [found, position]
        return None
