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


def shingles(text: str) -> list[bytes]:
    text = normalize(text)
    if len(text) <= SHINGLE:
        return [text.encode("utf-8")]
    return sorted({text[i : i + SHINGLE].encode("utf-8") for i in range(len(text) - SHINGLE + 1)})


def signature(text: str) -> MinHash:
    minhash = MinHash(num_perm=NUM_PERM, seed=SEED)
    minhash.update_batch(shingles(text))
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
