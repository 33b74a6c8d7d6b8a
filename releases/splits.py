"""Grouped, stratified, seeded train/validation/test splits.

Everything that shares a scenario, a client profile or a source (a candidate and those derived from it, e.g. a
reconstruction or a regeneration and its parent, a question and its source) forms one group, joined transitively,
and a group lies in one split: nothing the model trains on reappears in its test set under another name. Groups are
dealt out per sub-emotion (a group's most frequent one), in an order drawn from the seed, each to the split furthest
below its share: the same items and seed give the same splits, and each sub-emotion is spread as the groups allow.
"""

import hashlib
from collections import Counter
from dataclasses import dataclass

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Item:
    id: int
    keys: tuple[str, ...]  # what ties it to others: "scenario:4", "profile:2", "source:17"
    stratum: str  # its sub-emotion key, or "" when it has none


class _Groups:
    """Union-find over the items' keys."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        root = key
        while self.parent.setdefault(root, root) != root:
            root = self.parent[root]
        while self.parent[key] != root:  # path compression
            self.parent[key], key = root, self.parent[key]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def item_keys(*, id: int, scenario_id: int | None, profile_id: int | None, parent_id: int | None) -> tuple[str, ...]:
    keys = [f"source:{id}"]
    if parent_id is not None:
        keys.append(f"source:{parent_id}")
    if scenario_id is not None:
        keys.append(f"scenario:{scenario_id}")
    if profile_id is not None:
        keys.append(f"profile:{profile_id}")
    return tuple(keys)


def assign_splits(items: list[Item], *, ratios: dict[str, float], seed: int) -> tuple[dict[int, str], int]:
    """Each item's split (by id), and the number of groups."""
    groups = _Groups()
    for item in items:
        for key in item.keys[1:]:
            groups.union(item.keys[0], key)
    members: dict[str, list[Item]] = {}
    for item in items:
        members.setdefault(groups.find(item.keys[0]), []).append(item)

    strata: dict[str, list[tuple[str, list[Item]]]] = {}
    for group in members.values():
        counts = Counter(i.stratum for i in group)
        stratum = min(counts, key=lambda s: (-counts[s], s))
        first = min(i.id for i in group)
        order = hashlib.sha256(f"{seed}:{first}".encode()).hexdigest()
        strata.setdefault(stratum, []).append((order, group))

    assigned: dict[int, str] = {}
    for stratum in sorted(strata):
        filled = dict.fromkeys(SPLITS, 0)
        total = 0
        for _, group in sorted(strata[stratum], key=lambda pair: pair[0]):
            size = len(group)
            split = max(SPLITS, key=lambda s: (ratios[s] * (total + size) - filled[s], -SPLITS.index(s)))
            filled[split] += size
            total += size
            for item in group:
                assigned[item.id] = split
    return assigned, len(members)
