"""What every request must be before a view reads it: the edge rules, in one place.

- No NUL byte anywhere (a PostgreSQL text or jsonb value cannot hold one: the query would fail) and no lone surrogate
  (UTF-8 cannot encode one: saving or answering would fail), in a JSON body, a form body or the query string, keys
  included.
- JSON nested at most ``MAX_DEPTH`` deep (a deeper one would exhaust the parser's recursion: a 500), with no NaN or
  Infinity (PostgreSQL's jsonb refuses them).

The size of a body is bounded by Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``: DRF (3.18) parses ``request.body``, which
applies it; ``api_errors.exception_handler`` answers it with a JSON 413.

The parsers are the API's ``DEFAULT_PARSER_CLASSES`` (``REST_FRAMEWORK`` in settings), so a body is checked on every
endpoint the moment a view reads it; ``QueryStringMiddleware`` checks the query string of every request, pages
included, and the form bodies of pages. A refusal is a 400 ``{"detail": "... at <where>"}`` that names the place,
``scores.empathy`` or ``members[0]`` in a body, ``query sub_emotion`` in a query string.
"""

import codecs
import json

from django.conf import settings
from django.http import HttpResponseBadRequest, JsonResponse, QueryDict
from django.utils.translation import gettext as _
from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 32


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return _("a NUL character (\\u0000) is not allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _("a lone surrogate (\\ud800-\\udfff) is not allowed")
    return None


def _join(where: str, key) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


def value_problem(value, *, max_depth: int = MAX_DEPTH) -> str | None:
    """Why a parsed JSON value is refused, naming where (``scores.empathy``), or None. Iterative: no recursion."""
    stack = [(value, "", 1)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return _("nested more than %(depth)d deep at %(where)s") % {
                    "depth": max_depth,
                    "where": where or _("the body"),
                }
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and (problem := _text_problem(key)):
                    # Named without the key itself, which cannot be printed.
                    return _("%(problem)s in a key at %(where)s") % {
                        "problem": problem,
                        "where": where or _("the body"),
                    }
                stack.append((child, _join(where, key), depth + 1))
        elif isinstance(item, str) and (problem := _text_problem(item)):
            return _("%(problem)s at %(where)s") % {"problem": problem, "where": where or _("the body")}
    return None


def query_problem(query: QueryDict, *, label: str = "query") -> str | None:
    """Why a query string (or a form body) is refused, naming the parameter, or None."""
    for name, values in query.lists():
        if problem := _text_problem(name):
            return _("%(problem)s in a %(label)s parameter's name") % {"problem": problem, "label": label}
        for value in values:
            if problem := _text_problem(value):
                return _("%(problem)s at %(label)s %(name)s") % {"problem": problem, "label": label, "name": name}
    return None


class JSONParser(parsers.JSONParser):
    """DRF's strict JSON parser (no NaN), with the edge rules."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read()
        try:
            text = codecs.decode(raw, encoding)
        except (UnicodeDecodeError, LookupError):
            raise ParseError(f"JSON parse error - the body is not {encoding} text") from None
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} deep") from None
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from None
        if problem := value_problem(data):
            raise ParseError(problem)
        return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


class QueryStringMiddleware:
    """Refuse a NUL byte or a lone surrogate in any request's query string (and in a page's form body) with a 400.

    A filter like ``?sub_emotion=%00`` would otherwise reach a query, which PostgreSQL refuses with an error (a 500).
    The API's bodies are checked by the parsers above when a view reads them; a page's form is checked here, before
    its view (Django's CSRF check reads that form anyway).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        api = request.path_info.startswith("/api/")
        problem = query_problem(request.GET)
        if problem is None and not api and request.content_type == "application/x-www-form-urlencoded":
            problem = query_problem(request.POST, label="form field")
        if problem is not None:
            if api:
                return JsonResponse({"detail": problem}, status=400)
            return HttpResponseBadRequest(problem, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
