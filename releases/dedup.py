"""Near-duplicate detection for a build: MinHash signatures over character shingles, found by locality sensitive
hashing with the bands and rows datasketch's ``MinHashLSH`` chooses for the threshold (``lsh_bands``).

The signatures are datasketch's (``MinHash(num_perm=NUM_PERM, seed=SEED, scheme="affine32")`` fed each shingle's
hash), computed here for a batch of texts at once in numpy: the shingles of the whole batch are hashed in one pass,
and each permutation is one multiply-add over all of them and a minimum per text (``minimum.reduceat``), instead of
a ``MinHash`` object and a Python call per text. The values are the same as datasketch's, bit for bit (a test
compares them), so the decisions are too.

Deterministic: the permutations come from a fixed seed and count, and the build offers items in id order, so the
first of a set of near-copies is kept and each later one is reported with the id it duplicates.

The index is this module's, not ``MinHashLSH``'s own tables: those keep, per item and band, a set, a bytes object
and the key's list of band hashes, about 1.5 KB an item (1.5 GB for a million dialogues). Here a kept item costs a
slot in one flat open-addressing table per band (``_Table``: the band's digest to the item's position, about 17
bytes each) and its id; its signature's low 16 bits per permutation (128 bytes) go to a temporary file and are read
back only for an item that shares a band with a new one. They estimate the Jaccard similarity as well as the full
values do: two different 32-bit values share their low 16 bits once in 65,536 (b-bit minwise hashing), so the
estimate rises by under 0.00002. Exact duplicates are found in the same kind of table, keyed by the first 64 bits of
the normalized text's sha256.
"""

import hashlib
import os
import tempfile
from array import array
from collections.abc import Sequence

import numpy as np

from .formats import normalize

NUM_PERM = 64
SEED = 1
SHINGLE = 5  # characters: words for English, and Chinese, which has no spaces, alike
SCHEME = "affine32"
_MULTIPLIER = np.uint64(0x100000001B3)


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's ``affine32`` permutations, h -> a * h + b mod 2^32 with an odd a, drawn as it draws them (a test
    compares them with ``MinHash(...).permutations``). Not imported from datasketch: it loads scipy, about 50 MB of a
    build's memory."""
    draw = np.random.RandomState(seed)
    a = draw.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = draw.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


_A, _B = _permutations(NUM_PERM, SEED)
# The MurmurHash3 32-bit finalizer, datasketch's pre-mix of each input hash: shifts and multipliers.
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
# Gauss-Legendre nodes: exact for the polynomials below (degree at most NUM_PERM) once there are NUM_PERM of them.
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(NUM_PERM)


def _integral(curve, start: float, end: float) -> float:
    half = (end - start) / 2
    return float(np.sum(_WEIGHTS * curve(half * _NODES + (start + end) / 2)) * half)


def lsh_bands(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """The bands and rows ``MinHashLSH(threshold, num_perm)`` chooses: those that minimise the false positive and
    false negative areas, weighted alike (a test compares them with datasketch's for every threshold a spec takes).
    """
    best, chosen = float("inf"), (0, 0)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_positive = _integral(lambda s, b=bands, r=rows: 1 - (1 - s**r) ** b, 0.0, threshold)
            false_negative = _integral(lambda s, b=bands, r=rows: (1 - s**r) ** b, threshold, 1.0)
            error = 0.5 * false_positive + 0.5 * false_negative
            if error < best:
                best, chosen = error, (bands, rows)
    return chosen


def _band_digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


def _window_hashes(points: np.ndarray) -> np.ndarray:
    """A 32-bit hash of every ``SHINGLE``-character window of ``points`` (code points as uint64)."""
    count = len(points) - SHINGLE + 1
    with np.errstate(over="ignore"):
        hashed = np.zeros(count, dtype=np.uint64)
        for column in range(SHINGLE):  # FNV-style: multiply and mix in each character, wrapping at 64 bits
            hashed ^= points[column : column + count]
            hashed *= _MULTIPLIER
        hashed ^= hashed >> np.uint64(33)  # the splitmix64 finalizer spreads the bits before they are cut to 32
        hashed *= np.uint64(0xFF51AFD7ED558CCD)
        hashed ^= hashed >> np.uint64(33)
    return (hashed >> np.uint64(32)).astype(np.uint32)


def _code_points(normalized: str) -> np.ndarray:
    points = np.frombuffer(normalized.encode("utf-32-le"), dtype=np.uint32)
    if len(points) < SHINGLE:  # a short text is one shingle, padded with zeros
        points = np.concatenate([points, np.zeros(SHINGLE - len(points), dtype=np.uint32)])
    return points


def shingle_hashes(text: str) -> np.ndarray:
    """The 32-bit hash of each distinct ``SHINGLE``-character shingle of the normalized text."""
    return np.unique(_window_hashes(_code_points(normalize(text)).astype(np.uint64)))


def signatures(normalized: Sequence[str]) -> np.ndarray:
    """The MinHash signature of each text (already normalized), one row of ``NUM_PERM`` uint32 each: the
    values ``MinHash(num_perm=NUM_PERM, seed=SEED, scheme="affine32")`` holds once fed the text's shingle hashes."""
    if not normalized:
        return np.zeros((0, NUM_PERM), dtype=np.uint32)
    parts = [_code_points(text) for text in normalized]
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    hashed = _window_hashes(np.concatenate(parts).astype(np.uint64))
    # Windows that start in a text's last SHINGLE - 1 characters run into the next text: they are no shingle.
    ends = np.cumsum(lengths)
    keep = np.ones(len(hashed), dtype=bool)
    for back in range(1, SHINGLE):
        starts = ends - back
        keep[starts[starts < len(hashed)]] = False
    hashed = hashed[keep]
    first = np.concatenate([[0], np.cumsum(lengths - SHINGLE + 1)[:-1]])
    shift1, mul1, shift2, mul2, shift3 = _FMIX
    out = np.empty((len(normalized), NUM_PERM), dtype=np.uint32)
    with np.errstate(over="ignore"):
        # datasketch's pre-mix of each input hash (the MurmurHash3 finalizer), then its affine permutations.
        hashed ^= hashed >> shift1
        hashed *= mul1
        hashed ^= hashed >> shift2
        hashed *= mul2
        hashed ^= hashed >> shift3
        permuted = np.empty_like(hashed)
        for perm in range(NUM_PERM):
            np.multiply(hashed, _A[perm], out=permuted)
            permuted += _B[perm]
            out[:, perm] = np.minimum.reduceat(permuted, first)
    return out


def signature(text: str) -> np.ndarray:
    """One text's signature (``signatures`` of its normalized text)."""
    return signatures([normalize(text)])[0]


class _Table:
    """An open-addressing hash table (linear probing) of 64-bit keys (0 is the empty slot) to values, in two flat
    arrays: 8 bytes a key and 8 (``"q"``) or 4 (``"I"``) a value, at most ``LOAD`` full, so 17 to 23 bytes an entry
    where a dict of ints takes about 100. A key may be added more than once; ``get`` gives each of its values."""

    LOAD = 0.7

    def __init__(self, expected: int = 0, *, values: str = "q"):
        self._kind = values
        self._allocate(max(1024, int(max(expected, 1) / self.LOAD) + 1))

    def _allocate(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._keys = array("Q", bytes(8 * size))
        self._values = array(self._kind, bytes(array(self._kind).itemsize * size))

    def get(self, key: int) -> list[int]:
        keys, size = self._keys, self.size
        slot, found = key % size, []
        while (stored := keys[slot]) != 0:
            if stored == key:
                found.append(self._values[slot])
            slot = slot + 1 if slot + 1 < size else 0
        return found

    def first(self, key: int) -> int | None:
        keys, size = self._keys, self.size
        slot = key % size
        while (stored := keys[slot]) != 0:
            if stored == key:
                return self._values[slot]
            slot = slot + 1 if slot + 1 < size else 0
        return None

    def add(self, key: int, value: int) -> None:
        if self.used + 1 > self.LOAD * self.size:
            self._grow()
        keys, size = self._keys, self.size
        slot = key % size
        while keys[slot] != 0:
            slot = slot + 1 if slot + 1 < size else 0
        keys[slot] = key
        self._values[slot] = value
        self.used += 1

    def _grow(self) -> None:
        # Re-added in slot order, which keeps the order in which one key's values are found.
        old_keys, old_values = self._keys, self._values
        self._allocate(2 * self.size)
        for key, value in zip(old_keys, old_values, strict=True):
            if key != 0:
                self.add(key, value)


def _key(digest: bytes) -> int:
    """A table key from a digest's first 8 bytes (never 0, the empty slot)."""
    return int.from_bytes(digest[:8], "little") or 1


class ExactDuplicates:
    """Offer items in id order with the sha256 of their normalized text; ``offer`` returns the id of the first item
    offered with the same digest, or None (and then remembers this one). Keyed by the digest's first 64 bits: two
    different texts among a million share them with a probability of about 3e-8."""

    def __init__(self, expected: int = 0):
        self._table = _Table(expected)

    def offer(self, item_id: int, digest: bytes) -> int | None:
        key = _key(digest)
        first = self._table.first(key)
        if first is None:
            self._table.add(key, item_id)
        return first


BLOCK = 4_096  # items whose low bits are written to the file at once


class NearDuplicates:
    """Offer items in id order; ``offer`` returns the id of an earlier kept item the text is a near-copy of
    (estimated Jaccard similarity at least ``threshold``), or None, and then keeps the item. ``offer_signature``
    does the same with a signature from ``signatures`` (a build computes them a batch at a time).

    What a kept item costs in memory: a slot per band in the tables (its band's digest to its position, about
    51 bytes for the three bands) and its id (8 bytes). Its signature's low 16 bits (128 bytes) go to an anonymous
    temporary file, read back only for the items that share a band with a new one, so that a million kept items do
    not hold 128 MB of memory."""

    def __init__(self, threshold: float, expected: int = 0):
        self.threshold = threshold
        self.bands, self.rows = lsh_bands(threshold)
        if self.bands < 2:  # as MinHashLSH refuses it: one band of every row is an exact match, not a near one
            raise ValueError(f"dedup.near {threshold}: too high for {NUM_PERM} permutations (one band); 0.96 at most")
        self._index = [_Table(expected, values="I") for _ in range(self.bands)]
        self._ids = array("q")
        self._low = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close(), or with the object)
        self._width = NUM_PERM * 2
        self._written = 0  # items whose low bits are in the file; the later ones are in _pending
        self._pending = bytearray()

    def close(self) -> None:
        self._low.close()

    def _digests(self, values: np.ndarray) -> list[int]:
        data = values.tobytes()
        width = self.rows * values.itemsize
        return [_key(_band_digest(data[b * width : (b + 1) * width])) for b in range(self.bands)]

    def _stored(self, position: int) -> np.ndarray:
        if position >= self._written:
            start = (position - self._written) * self._width
            return np.frombuffer(bytes(self._pending[start : start + self._width]), dtype=np.uint16)
        return np.frombuffer(os.pread(self._low.fileno(), self._width, position * self._width), dtype=np.uint16)

    def offer(self, item_id: int, text: str) -> int | None:
        return self.offer_signature(item_id, signature(text))

    def offer_signature(self, item_id: int, values: np.ndarray) -> int | None:
        low = values.astype(np.uint16)
        digests = self._digests(values)
        seen: set[int] = set()
        for band, digest in zip(self._index, digests, strict=True):
            seen.update(band.get(digest))
        matches = [
            self._ids[position]
            for position in sorted(seen)
            if float(np.mean(self._stored(position) == low)) >= self.threshold
        ]
        if matches:
            return min(matches)
        position = len(self._ids)
        self._pending += low.tobytes()
        if len(self._pending) >= BLOCK * self._width:  # written a block at a time: a write per item took 50 µs
            os.pwrite(self._low.fileno(), self._pending, self._written * self._width)
            self._written += len(self._pending) // self._width
            self._pending = bytearray()
        self._ids.append(item_id)
        for band, digest in zip(self._index, digests, strict=True):
            band.add(digest, position)
        return None
