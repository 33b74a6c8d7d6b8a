"""Peak memory of the grouped splits alone at N items (no database): every 10th item has the one before as its
parent, 35 sub-emotions, 0.8/0.1/0.1.

    python bench/release_splits.py --items 1000000

The last line printed is one JSON object: items, groups, seconds, peak_mb_over_base (the process's ru_maxrss after
the split minus before it, the input arrays and scipy already loaded).
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    count = parser.parse_args().items
    import scipy.sparse.csgraph  # noqa: F401 (loaded before the base is taken: the split's own memory is measured)

    from releases import splits

    ids = np.arange(1, count + 1, dtype=np.int64)
    parents = np.where(ids % 10 == 0, ids - 1, -1)
    none = np.full(count, -1, dtype=np.int64)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    _, groups = splits.assign_splits_arrays(
        ids=ids, scenarios=none, profiles=none, parents=parents, strata=ids % 35, names=[f"s{i:02}" for i in range(35)],
        ratios={"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    figures = {"items": count, "groups": groups, "seconds": round(seconds, 1), "peak_mb_over_base": round(peak)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
