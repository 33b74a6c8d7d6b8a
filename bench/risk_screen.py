"""Recall and precision of the self-harm screen (``generation.risk``) on its sentence table.

    python bench/risk_screen.py

The table (``tests/generation/risk_sentences.py``) is the one the rules were written against: the figures describe
the development set, not a held-out one. The screen is plain Python, so no Django set-up is needed. Prints, per
language and overall, TP/FP/FN/TN, recall and precision, then every misclassified sentence. The last line printed
is one JSON object with the same figures.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generation.risk import find  # noqa: E402
from tests.generation.risk_sentences import SENTENCES  # noqa: E402


def _figures(rows: list[tuple[str, str, bool, str | None]]) -> dict:
    """TP/FP/FN/TN, recall and precision of ``(id, text, risky, hit)`` rows."""
    tp = sum(risky and hit is not None for _, _, risky, hit in rows)
    fp = sum(not risky and hit is not None for _, _, risky, hit in rows)
    fn = sum(risky and hit is None for _, _, risky, hit in rows)
    tn = len(rows) - tp - fp - fn
    return {
        "n": len(rows),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "recall": round(tp / (tp + fn), 3) if tp + fn else None,
        "precision": round(tp / (tp + fp), 3) if tp + fp else None,
    }


def main() -> None:
    rows = [(sentence_id, text, risky, find(text)) for sentence_id, text, risky in SENTENCES]
    groups = {
        "en": [r for r in rows if r[0].startswith("en-")],
        "zh": [r for r in rows if r[0].startswith("zh-")],
        "all": rows,
    }
    figures = {name: _figures(group) for name, group in groups.items()}
    print(f"{'set':<5}{'n':>5}{'TP':>5}{'FP':>5}{'FN':>5}{'TN':>5}{'recall':>9}{'precision':>11}")
    for name, f in figures.items():
        print(
            f"{name:<5}{f['n']:>5}{f['tp']:>5}{f['fp']:>5}{f['fn']:>5}{f['tn']:>5}"
            f"{f['recall']:>9.3f}{f['precision']:>11.3f}"
        )
    wrong = [r for r in rows if r[2] != (r[3] is not None)]
    print(f"\nmisclassified: {len(wrong)}")
    for sentence_id, text, _, hit in wrong:
        outcome = f"false positive ({hit})" if hit else "missed"
        print(f"  {sentence_id}: {outcome}: {text}")
    print(json.dumps({"figures": figures, "misclassified": [r[0] for r in wrong]}, ensure_ascii=False))


if __name__ == "__main__":
    main()
