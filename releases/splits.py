"""Grouped, stratified, seeded train/validation/test splits.

Everything that shares a scenario, a client profile or a source (a candidate and those derived from it, e.g. a
reconstruction or a regeneration and its parent, a question and its source) forms one group, joined transitively,
and a group lies in one split: nothing the model trains on reappears in its test set under another name. Groups are
dealt out per sub-emotion (a group's most frequent one), in an order drawn from the seed, each to the split furthest
below its share: the same items and seed give the same splits, and each sub-emotion is spread as the groups allow.
"""

import hashlib
from dataclasses import dataclass

import numpy as np

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
    """Each item's split (by id), and the number of groups (``assign_splits_arrays`` on a list of items)."""
    tags = {"source": 0, "scenario": 1, "profile": 2}
    columns: dict[str, list[int]] = {"scenario": [], "profile": [], "parent": []}
    for item in items:
        found = {"scenario": -1, "profile": -1, "parent": -1}
        for key in item.keys[1:]:
            name, value = key.split(":")
            found["parent" if tags[name] == 0 else name] = int(value)
        for name, column in columns.items():
            column.append(found[name])
    table = Strata()
    codes = [table.code(item.stratum) for item in items]
    chosen, groups = assign_splits_arrays(
        ids=np.array([item.id for item in items], dtype=np.int64),
        scenarios=np.array(columns["scenario"], dtype=np.int64),
        profiles=np.array(columns["profile"], dtype=np.int64),
        parents=np.array(columns["parent"], dtype=np.int64),
        strata=np.array(codes, dtype=np.int64),
        names=table.names,
        ratios=ratios,
        seed=seed,
    )
    return {item.id: SPLITS[split] for item, split in zip(items, chosen.tolist(), strict=True)}, groups


class Strata:
    """Stratum names as small ints, in the order they are first seen."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, name: str) -> int:
        found = self._codes.get(name)
        if found is None:
            found = self._codes[name] = len(self.names)
            self.names.append(name)
        return found


def assign_splits_arrays(
    *,
    ids: np.ndarray,
    scenarios: np.ndarray,
    profiles: np.ndarray,
    parents: np.ndarray,
    strata: np.ndarray,
    names: list[str],
    ratios: dict[str, float],
    seed: int,
) -> tuple[np.ndarray, int]:
    """Each item's split (an index into ``SPLITS``, aligned with ``ids``), and the number of groups.

    One array per column, -1 where an item has no scenario, profile or parent; ``strata`` holds codes into
    ``names``. The groups are the connected parts of the graph joining each item's keys (scipy's
    ``connected_components``, a few arrays where a union-find over string keys took about 300 bytes an item).
    """
    # scipy is imported here, not with the module: the web processes import this one and never split.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    count = len(ids)
    if count == 0:
        return np.zeros(0, dtype=np.int8), 0
    # The graph's nodes: each item (its own key, "source:<id>"), then each parent that is not an item, each
    # scenario and each profile; an edge joins an item to each of its other keys.
    order_of = np.argsort(ids, kind="stable")
    sorted_ids = ids[order_of]
    rows, cols, nodes = [], [], count
    has = parents >= 0
    where = np.minimum(np.searchsorted(sorted_ids, parents[has]), count - 1)
    inside = sorted_ids[where] == parents[has]
    items_with = np.flatnonzero(has)
    rows.append(items_with[inside])
    cols.append(order_of[where[inside]])
    for column, present in ((parents, items_with[~inside]), (scenarios, np.flatnonzero(scenarios >= 0)),
                            (profiles, np.flatnonzero(profiles >= 0))):  # fmt: skip
        values, index = np.unique(column[present], return_inverse=True)
        rows.append(present)
        cols.append(nodes + index.reshape(-1))
        nodes += len(values)
    row, col = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(row), dtype=np.int8), (row, col)), shape=(nodes, nodes))
    _, labels = connected_components(graph, directed=False)
    # Each item's group, numbered from 0 (a node that is no item is in some item's group).
    _, label = np.unique(labels[:count], return_inverse=True)
    label = label.reshape(-1).astype(np.int32)
    groups = int(label.max()) + 1
    del order_of, sorted_ids, rows, cols, row, col, graph, labels

    first = np.full(groups, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, label, ids)
    sizes = np.bincount(label, minlength=groups)
    # A group's stratum: its most frequent one, the first by name on a tie.
    rank = np.argsort(np.argsort(np.array(names, dtype=object)))  # a code's place in name order
    pair, tally = np.unique(label * len(names) + rank[strata], return_counts=True)
    group_of, place = np.divmod(pair, len(names))
    best = np.lexsort((place, -tally, group_of))
    leader = np.ones(len(best), dtype=bool)
    leader[1:] = group_of[best][1:] != group_of[best][:-1]
    stratum = np.empty(groups, dtype=np.int64)
    stratum[group_of[best][leader]] = place[best][leader]

    # The order groups are dealt in: by stratum (in name order), then by sha256("seed:first id"), compared as bytes
    # (the four big-endian 64-bit words of each digest, sorted together), without a string a group.
    # The first 16 bytes are enough to order them unless two groups share them; then all 32 are compared.
    def order_by(words: int) -> np.ndarray:
        digests = np.empty((groups, words), dtype=">u8")
        for begin in range(0, groups, step):
            chunk = first[begin : begin + step].tolist()
            data = b"".join(hashlib.sha256(f"{seed}:{value}".encode()).digest()[: 8 * words] for value in chunk)
            digests[begin : begin + len(chunk)] = np.frombuffer(data, dtype=">u8").reshape(-1, words)
        order = np.lexsort((*(digests[:, w] for w in reversed(range(words))), stratum))
        ranked = digests[order]
        tied = (ranked[1:] == ranked[:-1]).all(axis=1) & (stratum[order][1:] == stratum[order][:-1])
        return order if words == 4 or not tied.any() else order_by(4)

    step = 65_536
    order = order_by(2)
    chosen = np.empty(groups, dtype=np.int8)
    shares = [ratios[s] for s in SPLITS]
    filled, total, current = [0, 0, 0], 0, -1
    for begin in range(0, groups, step):
        part = order[begin : begin + step]
        for group, value, size in zip(part.tolist(), stratum[part].tolist(), sizes[part].tolist(), strict=True):
            if value != current:  # each stratum is dealt on its own
                filled, total, current = [0, 0, 0], 0, value
            split = max(range(3), key=lambda s: (shares[s] * (total + size) - filled[s], -s))
            filled[split] += size
            total += size
            chosen[group] = split
    return chosen[label], groups
