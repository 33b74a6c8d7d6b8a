"""The parts a large build runs on, against the slower reference each replaces: datasketch's MinHash and LSH, a
union-find over string keys, ``re.sub`` for white space, the PII prefilter's regular expression, difflib's ratio."""

import difflib
import hashlib
import random
import re
import unicodedata
from collections import Counter

import numpy as np
import phonenumbers
import pytest
from datasketch import MinHash, MinHashLSH

from releases import dedup, formats, pii, splits

WORDS = (  # noqa: SIM905 (a list of 40 words would take 40 lines once formatted)
    "i you we feel think know want need worry sleep work school family friend partner mother exam job money week "
    "night tired anxious sad angry alone afraid calm hopeful lost stuck 我 最近 压力 很大 晚上 睡不着 焦虑 紧张"
).split()


def corpus(seed: int = 7) -> list[str]:
    """Texts with near copies at every distance: a word or many changed, added or dropped, exact copies, short ones."""
    rng = random.Random(seed)
    texts: list[str] = ["", "a", "ab", "abcd", "abcde", "  Hello   WORLD "]
    for _ in range(120):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 90))]
        texts.append(" ".join(words))
        for changes in (1, 2, 4, 8, 16):
            copy = list(words)
            for _ in range(changes):
                copy[rng.randrange(len(copy))] = rng.choice(WORDS)
            texts.append(" ".join(copy))
        texts.append(" ".join(words) + " indeed")
        texts.append(" ".join(words).upper())
    rng.shuffle(texts)
    return texts


def datasketch_signature(text: str) -> MinHash:
    minhash = MinHash(num_perm=dedup.NUM_PERM, seed=dedup.SEED, scheme=dedup.SCHEME, hashfunc=lambda v: v)
    minhash.update_batch(dedup.shingle_hashes(text).tolist())
    return minhash


def test_the_permutations_and_bands_are_datasketchs():
    a, b = MinHash(num_perm=dedup.NUM_PERM, seed=dedup.SEED, scheme=dedup.SCHEME).permutations
    assert a.dtype == dedup._A.dtype and (a == dedup._A).all() and (b == dedup._B).all()
    for hundredths in range(50, 97):
        threshold = hundredths / 100
        lsh = MinHashLSH(threshold=threshold, num_perm=dedup.NUM_PERM)
        assert dedup.lsh_bands(threshold) == (lsh.b, lsh.r), threshold
    with pytest.raises(ValueError, match="b < 2"):
        MinHashLSH(threshold=0.97, num_perm=dedup.NUM_PERM)
    with pytest.raises(ValueError, match="dedup.near 0.97: too high"):
        dedup.NearDuplicates(0.97)


def test_signatures_are_datasketchs_bit_for_bit():
    texts = corpus()
    batch = dedup.signatures([formats.normalize(t) for t in texts])
    assert batch.shape == (len(texts), dedup.NUM_PERM) and batch.dtype == np.uint32
    for text, row in zip(texts, batch, strict=True):
        assert (datasketch_signature(text).hashvalues == row).all(), text
        assert (dedup.signature(text) == row).all()  # one at a time, as in a batch
    assert dedup.signatures([]).shape == (0, dedup.NUM_PERM)


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9])
def test_near_duplicates_decide_as_datasketchs_lsh(threshold):
    """The datasketch path (a MinHash per text, MinHashLSH, the full signatures compared) and this one drop the same
    items as copies of the same ones."""
    texts = corpus()
    lsh = MinHashLSH(threshold=threshold, num_perm=dedup.NUM_PERM)
    kept: dict[int, MinHash] = {}
    expected = []
    for item, text in enumerate(texts):
        minhash = datasketch_signature(text)
        matches = [k for k in lsh.query(minhash) if minhash.jaccard(kept[k]) >= threshold]
        if matches:
            expected.append(min(matches))
        else:
            expected.append(None)
            kept[item] = minhash
            lsh.insert(item, minhash)
    finder = dedup.NearDuplicates(threshold)
    found = [finder.offer(item, text) for item, text in enumerate(texts)]
    finder.close()
    assert found == expected
    assert 20 < sum(f is not None for f in found) < len(texts) - 100  # the corpus has copies and originals


def test_the_batch_path_decides_as_one_at_a_time():
    texts = corpus(3)
    one = dedup.NearDuplicates(0.8)
    batch = dedup.NearDuplicates(0.8, expected=len(texts))
    signed = dedup.signatures([formats.normalize(t) for t in texts])
    assert [one.offer(i, t) for i, t in enumerate(texts)] == [
        batch.offer_signature(i, signed[i]) for i in range(len(texts))
    ]


def test_the_table_keeps_every_value_of_a_key_across_collisions_and_growth():
    table = dedup._Table(0)
    size = table.size
    # Keys that land in one slot, and one key added twice.
    keys = [5 + size * n for n in range(6)] + [5]
    for value, key in enumerate(keys):
        table.add(key, value)
    assert sorted(table.get(5)) == [0, 6] and table.first(5) == 0
    assert table.get(5 + size) == [1] and table.get(7) == [] and table.first(7) is None
    for value in range(5_000):  # grows several times
        table.add(value * 7919 + 11, value)
    assert table.size > size and table.used == 5_007
    assert all(table.get(value * 7919 + 11) == [value] for value in range(0, 5_000, 37))
    assert sorted(table.get(5)) == [0, 6]


def test_exact_duplicates_name_the_first():
    exact = dedup.ExactDuplicates(2)
    first, other = formats.text_hash("A  text"), formats.text_hash("another")
    assert exact.offer(10, first) is None and exact.offer(11, other) is None
    assert exact.offer(12, formats.text_hash("a text")) == 10 and exact.offer(13, first) == 10
    assert dedup._key(bytes(32)) == 1  # a digest of zeros is not the empty slot


def test_normalize_is_the_regular_expressions():
    spaces = "".join(chr(c) for c in range(0x3001) if chr(c).isspace() or re.fullmatch(r"\s", chr(c)))
    samples = [
        spaces,
        f"a{spaces}b",
        f"{spaces}X\u00a0Y\u3000Z{spaces}",
        "ＡＢＣ ﬁ Straße\x1c\x1d x",
        "",
        "\x00 nul \x00",
    ]
    for text in samples + corpus(5)[:50]:
        expected = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()
        assert formats.normalize(text) == expected


def test_the_pii_prefilter_misses_nothing_the_old_expression_found():
    old = re.compile(r"[0-9@]|www\.|https?:", re.IGNORECASE)
    samples = ["no digits here", "call 5", "a@b", "WWW.example", "see HTTPS://x", "Http:", "wWw.", "ww w.", "htt p",
               "httpſ:", "１２３", "", "\x00", "邮箱"]  # fmt: skip
    for text in samples:
        assert pii.maybe(text) or not old.search(text), text
    assert not pii.maybe("no digits, mail or links here") and not pii.maybe("ww w. htt p")


def test_the_phone_prefilters_bound_is_the_librarys():
    """No number phonenumbers holds valid has fewer digits than MIN_PHONE_DIGITS: a national number of a region the
    scan reads, or any region's number with its country code."""
    from phonenumbers import PhoneMetadata

    fewest = []
    for region in phonenumbers.SUPPORTED_REGIONS:
        metadata = PhoneMetadata.metadata_for_region(region)
        shortest = min(n for n in metadata.general_desc.possible_length if n > 0)
        fewest.append(shortest + len(str(metadata.country_code)))
        if region in pii.PHONE_REGIONS:
            fewest.append(shortest)
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        metadata = PhoneMetadata.metadata_for_nongeo_region(code)
        fewest.append(min(n for n in metadata.general_desc.possible_length if n > 0) + len(str(code)))
    assert min(fewest) >= pii.MIN_PHONE_DIGITS
    # A valid number at seven digits (Niue's, with its country code) is still found; five digits are not looked at.
    assert [h.detector for h in pii.scan("call +683 4002 now")] == ["phone"]
    assert pii.scan("room 12345, floor 3") == []


def test_quick_ratio_first_drops_the_same_pairs():
    rng = random.Random(2)
    for _ in range(300):
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
        b = a if rng.random() < 0.3 else " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
        b = b + rng.choice(["", ".", " really", " x"])
        for bar in (0.5, 0.8, 0.95):
            content = {"turns": [{"role": "client", "text": "hi"}, {"role": "counselor", "text": a}]}
            model = {"turns": [{"role": "client", "text": "hi"}, {"role": "counselor", "text": b}]}
            candidate = type("C", (), {"pk": 1, "sub_emotion": None, "language": "en"})()
            rows, dropped = formats.dpo_rows(
                candidate=candidate,
                revision=type("R", (), {"content": content, "number": 1})(),
                original=type("R", (), {"content": model, "number": 0})(),
                max_similarity=bar,
            )
            chosen, rejected = formats.normalize(a), formats.normalize(b)
            if a == b:
                assert rows == [] and dropped == {}
            elif chosen == rejected:
                assert dropped == {"dpo_identical": 1}
            elif difflib.SequenceMatcher(None, chosen, rejected, autojunk=False).ratio() > bar:
                assert dropped == {"dpo_near_identical": 1}
            else:
                assert len(rows) == 1 and dropped == {}


def reference_splits(items, *, ratios, seed):
    """The union-find over string keys the build used before its arrays, kept here to check them against."""
    parent: dict[str, str] = {}

    def find(key):
        root = key
        while parent.setdefault(root, root) != root:
            root = parent[root]
        return root

    for item in items:
        for key in item.keys[1:]:
            a, b = find(item.keys[0]), find(key)
            if a != b:
                parent[max(a, b)] = min(a, b)
    members: dict[str, list] = {}
    for item in items:
        members.setdefault(find(item.keys[0]), []).append(item)
    strata: dict[str, list] = {}
    for group in members.values():
        counts = Counter(i.stratum for i in group)
        stratum = min(counts, key=lambda s: (-counts[s], s))
        order = hashlib.sha256(f"{seed}:{min(i.id for i in group)}".encode()).hexdigest()
        strata.setdefault(stratum, []).append((order, group))
    assigned = {}
    for stratum in sorted(strata):
        filled = dict.fromkeys(splits.SPLITS, 0)
        total = 0
        for _, group in sorted(strata[stratum], key=lambda pair: pair[0]):
            size = len(group)
            split = max(splits.SPLITS, key=lambda s: (ratios[s] * (total + size) - filled[s], -splits.SPLITS.index(s)))
            filled[split] += size
            total += size
            for item in group:
                assigned[item.id] = split
    return assigned, len(members)


@pytest.mark.parametrize("seed", range(12))
def test_array_splits_are_the_union_finds(seed):
    rng = random.Random(seed)
    ids = sorted(rng.sample(range(1, 3000), rng.randint(1, 500)))
    items = [
        splits.Item(
            id=pk,
            keys=splits.item_keys(
                id=pk,
                scenario_id=rng.choice([None, rng.randint(1, 40)]),
                profile_id=rng.choice([None, None, rng.randint(1, 25)]),
                parent_id=rng.choice([None, None, rng.choice(ids), rng.randint(1, 3000)]),
            ),
            stratum=rng.choice(["anxiety.1", "sadness.2", "none", "anger.3", "Anger.3"]),
        )
        for pk in ids
    ]
    ratios = rng.choice([{"train": 0.8, "validation": 0.1, "test": 0.1}, {"train": 1, "validation": 0, "test": 0},
                         {"train": 0.34, "validation": 0.33, "test": 0.33}])  # fmt: skip
    assert splits.assign_splits(items, ratios=ratios, seed=seed) == reference_splits(items, ratios=ratios, seed=seed)


def test_array_splits_of_nothing():
    empty = np.zeros(0, dtype=np.int64)
    chosen, groups = splits.assign_splits_arrays(
        ids=empty, scenarios=empty, profiles=empty, parents=empty, strata=empty, names=[],
        ratios={"train": 1, "validation": 0, "test": 0}, seed=0,
    )  # fmt: skip
    assert len(chosen) == 0 and groups == 0


def test_kept_signatures_are_read_back_from_the_file_and_from_memory(monkeypatch):
    monkeypatch.setattr(dedup, "BLOCK", 3)  # the low bits go to the file three items at a time
    texts = [" ".join(hashlib.sha256(f"{n}:{k}".encode()).hexdigest() for k in range(3)) for n in range(10)]
    finder = dedup.NearDuplicates(0.8)
    assert [finder.offer(n, t) for n, t in enumerate(texts)] == [None] * 10
    assert finder._written == 9 and len(finder._pending) == finder._width
    assert finder.offer(10, texts[0] + " indeed") == 0  # in the file
    assert finder.offer(11, texts[9] + " indeed") == 9  # not written yet
    finder.close()


def test_the_pii_prefilter_reads_every_script():
    assert pii.maybe("电话１３８ and 5") and pii.maybe("邮箱 a@b.cn") and pii.maybe("访问 WwW.例子")
    assert not pii.maybe("我最近压力很大，晚上总是睡不着") and not pii.maybe("\ud800 lone surrogate")
    hits, redacted = pii.scan_content(
        "dialogue", {"turns": [{"role": "client", "text": "我的电话是 13800138000"}]}, list(pii.DETECTORS)
    )
    assert [(where, hit.detector) for where, hit, _ in hits] == [("turns[0].text", "phone")]
    assert redacted["turns"][0]["text"] == "我的电话是 [PHONE]"
