"""Integer columns of a query as numpy arrays, read without a Python object per value.

The dashboards' cold numbers are computed in numpy from a few columns of up to a million reviews. Fetched as rows,
each value becomes a Python object before numpy sees it, and that took most of a cold page. So the database computes
every column as an integer (codes for the scores and decisions, indexes for weeks) and, on PostgreSQL, sends them as
one value: a two-dimensional ``bigint`` array of the rows in the binary array format (``array_send``), which
``numpy.frombuffer`` reads as a table; numpy then orders it by the first column. (``COPY ... TO STDOUT (FORMAT
binary)`` costs a Python call per row in the driver, and a ``string_agg`` of ``int8send`` twice the array's time in
the database.) Elsewhere (SQLite) the rows are fetched and converted at once.
"""

from __future__ import annotations

import numpy as np
import psycopg
from django.db import connections
from django.db.models import BigIntegerField, IntegerField, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from annotations.rubrics import SCALE

SCORES = list(range(SCALE[0], SCALE[1] + 1))


def int_columns(queryset: QuerySet, *columns) -> list[np.ndarray]:
    """``queryset.values_list(*columns)`` as one ``int64`` array per column, in the order of the first column (a
    unique key, such as the id). Every column must be a non-null integer (a field, or an expression that the
    database evaluates to one); ``ValueError`` otherwise."""
    rows = queryset.values_list(*[Cast(column, BigIntegerField()) for column in columns])
    connection = connections[rows.db]
    if connection.vendor == "postgresql":
        # Ordered in numpy, once the rows are read.
        sql, params = rows.order_by().query.sql_with_params()
        return _packed(connection, sql, params, len(columns))
    sql, params = rows.order_by(columns[0]).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    if any(value is None for row in fetched for value in row):
        raise ValueError("a column of the query has a NULL: every column must be an integer")
    array = np.array(fetched, dtype=np.int64).reshape(len(fetched), len(columns))
    return [array[:, i].copy() for i in range(len(columns))]


def score_code(vendor: str, key: str) -> RawSQL:
    """The code (0 for the lowest score) of a review's score of criterion ``key`` (``annotations_review.scores``),
    computed by the database: a JSON number equal to a score of the scale; -1 for anything else (review_submit keeps
    only whole scores: ``validate_scores``). One JSON extraction per review: at a million reviews each costs a few
    hundred milliseconds."""
    whens = " ".join(f"WHEN {score} THEN {score - SCORES[0]}" for score in SCORES)
    if vendor == "postgresql":
        whens = " ".join(f"WHEN '{score}'::jsonb THEN {score - SCORES[0]}" for score in SCORES)
        return RawSQL(f"CASE annotations_review.scores -> %s {whens} ELSE -1 END", (key,), output_field=IntegerField())
    # SQLite: json_extract gives a JSON string as text, which equals no number, and true as 1: hence the type.
    path = '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return RawSQL(
        "CASE WHEN json_type(annotations_review.scores, %s) IN ('integer', 'real')"
        f" THEN CASE json_extract(annotations_review.scores, %s) {whens} ELSE -1 END ELSE -1 END",
        (path, path),
        output_field=IntegerField(),
    )


def _packed(connection, sql: str, params, n_columns: int) -> list[np.ndarray]:
    names = [f"c{i}" for i in range(n_columns)]
    # One two-dimensional int8 array of every row (one aggregate, so the fields of a row stay together), sent in
    # PostgreSQL's binary array format (``array_send``).
    statement = (
        f"SELECT array_send(array_agg(ARRAY[{', '.join(f't.{name}' for name in names)}]))"
        f" FROM ({sql}) AS t({', '.join(names)})"
    )
    connection.ensure_connection()
    # A server-side-binding cursor: Django's own binds on the client, which cannot ask for binary results.
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(statement, params, binary=True)
        row = cursor.fetchone()
    data = row[0] if row else None
    if data is None:  # no rows
        return [np.zeros(0, dtype=np.int64) for _ in range(n_columns)]
    data = data if isinstance(data, bytes) else bytes(data)
    # The header: dimensions, whether any element is NULL, the element type; then each dimension's size and lower
    # bound; then each element as its length (int32) and value.
    dimensions, has_null = np.frombuffer(data[:8], dtype=">i4")
    if has_null:
        raise ValueError("a column of the query has a NULL: every column must be an integer")
    if dimensions != 2:
        raise ValueError("not a table of integers")
    n_rows, _, width, _ = np.frombuffer(data[12:28], dtype=">i4")
    element = np.dtype([("length", ">i4"), ("value", ">i8")])
    elements = np.frombuffer(data, dtype=element, offset=28)
    if width != n_columns or len(elements) != n_rows * n_columns or (elements["length"] != 8).any():
        raise ValueError("not a table of bigints")
    # Column by column, each taken in the order of the first: at a million rows a whole-table copy is 64 MB more.
    values = elements["value"]
    order = np.argsort(values[0::n_columns], kind="stable")
    return [values[i::n_columns][order].astype(np.int64) for i in range(n_columns)]
