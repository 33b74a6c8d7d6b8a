"""The EmoPsy taxonomy: categories and sub-emotions, loaded from ``generation/data/taxonomy.json``."""

import json
from pathlib import Path

from django.db import transaction

from ..models import EmotionCategory, SubEmotion

TAXONOMY_FILE = Path(__file__).resolve().parent.parent / "data" / "taxonomy.json"


def taxonomy_load(*, path: Path = TAXONOMY_FILE) -> tuple[int, int]:
    """Load (or update in place) the EmoPsy categories and sub-emotions. Returns (categories, sub-emotions) created.

    A handful of queries whatever the taxonomy's size: the rows are read once, then created or updated in bulk.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    with transaction.atomic():
        categories = {category.key: category for category in EmotionCategory.objects.select_for_update()}
        created_categories = _rows_upsert(
            EmotionCategory,
            categories,
            {cat["key"]: {"label_zh": cat["zh"], "label_en": cat["en"]} for cat in data["categories"]},
        )
        subs = {sub.key: sub for sub in SubEmotion.objects.select_for_update()}
        created_subs = _rows_upsert(
            SubEmotion,
            subs,
            {
                sub["key"]: {"category": categories[cat["key"]], "label_zh": sub["zh"], "label_en": sub["en"]}
                for cat in data["categories"]
                for sub in cat["sub_emotions"]
            },
        )
    return created_categories, created_subs


def _rows_upsert(model, existing: dict, wanted: dict[str, dict]) -> int:
    """Create the rows of ``wanted`` (key -> field values) missing from ``existing`` (key -> row) and update the
    changed ones; ``existing`` gains the created rows. Returns how many were created."""
    created, changed = [], []
    for key, values in wanted.items():
        row = existing.get(key)
        if row is None:
            created.append(model(key=key, **values))
        elif any(getattr(row, field) != value for field, value in values.items()):
            for field, value in values.items():
                setattr(row, field, value)
            changed.append(row)
    model.objects.bulk_create(created)
    if changed:
        model.objects.bulk_update(changed, fields=list(next(iter(wanted.values()))))
    existing.update({row.key: row for row in model.objects.filter(key__in=[row.key for row in created])})
    return len(created)
