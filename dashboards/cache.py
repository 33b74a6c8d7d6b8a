"""Warm dashboards: a result is cached under a key that includes what it was computed from (the largest review id
and the number of reviews in scope, and so on), so a new or deleted review makes a new key and nothing needs
invalidating; an unused key simply expires. The cache is Django's (``CACHES``: per process by default)."""

import hashlib
import json
from collections.abc import Callable
from typing import TypeVar

from django.core.cache import cache
from django.db.models import Count, Max, QuerySet

T = TypeVar("T")
TIMEOUT_S = 15 * 60


def version_of(queryset: QuerySet, *, field: str = "id") -> tuple:
    """What identifies the rows of ``queryset`` as they are now: their count and the largest ``field``."""
    row = queryset.order_by().aggregate(n=Count("id"), last=Max(field))
    return row["n"], str(row["last"])


def cached(name: str, parts: list, compute: Callable[[], T]) -> T:
    """``compute()``, or its result cached under ``name`` and ``parts`` (filters, scope, versions)."""
    digest = hashlib.sha256(json.dumps([name, *parts], default=str, sort_keys=True).encode()).hexdigest()
    key = f"dashboards:{name}:{digest}"
    hit = cache.get(key)
    if hit is not None:
        return hit
    value = compute()
    cache.set(key, value, TIMEOUT_S)
    return value
