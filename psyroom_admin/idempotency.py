"""``Idempotency-Key`` on every write of the API: the same key, by the same user, on the same endpoint, gets the first
answer again (its status and body) and writes nothing more (see docs/api.md, *Idempotency keys*).

Each write view of the API wraps its handler with ``@idempotent``. The rules, all here:

- a key is 1 to 64 visible ASCII characters (``MAX_KEY_LENGTH``), sent as the ``Idempotency-Key`` header (or, where
  an endpoint had one before the header, a body field: ``@idempotent(body_field="idempotency_key")``); keys are
  per user; a request without one is not affected;
- a successful answer (2xx) is kept with the key for ``KEY_TTL`` (24 hours); after that the key is free again;
- the same key with another body or on another endpoint is a 422 naming the conflict, and nothing is written;
- a refusal (4xx) is not kept: nothing was written, so the same request may be sent again with the same key (after
  fixing it, or when the rule it broke no longer holds); a 5xx writes and keeps nothing;
- twins: the key's row is inserted first, in the transaction that does the write. The unique (user, key) makes a
  second insert wait on PostgreSQL until the first transaction ends (on SQLite, ``BEGIN IMMEDIATE`` queues the whole
  transaction): when it commits, the twin reads the answer it kept; when it rolls back, the twin does the work.
"""

import functools
import hashlib
import json
import re
from datetime import timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.http import QueryDict
from django.utils import timezone
from django.utils.translation import gettext
from rest_framework import status
from rest_framework.response import Response

from .models import IdempotencyKey

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 64
KEY_TTL = timedelta(hours=24)
KEY_RE = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")
# Answered with the body that the key first got, so that a client can tell a replay from a first answer.
REPLAYED_HEADER = "Idempotent-Replayed"


class KeyConflict(Exception):
    """The key was used before with another body or on another endpoint."""


def _key_of(request, body_field: str | None) -> tuple[str | None, Response | None]:
    """The request's key, or a 400 answer when the header is not a key (or the header and the body disagree)."""
    header = request.headers.get(HEADER)
    if header is not None and not KEY_RE.fullmatch(header):
        return None, _refusal(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} visible ASCII characters (a UUID is a good key).",
            "invalid_idempotency_key",
            status.HTTP_400_BAD_REQUEST,
        )
    body_key = None
    if body_field and isinstance(request.data, dict):
        value = request.data.get(body_field)
        # A body key that is no key is left to the view's serializer, which refuses it naming the field.
        if isinstance(value, str) and KEY_RE.fullmatch(value):
            body_key = value
    if header and body_key and header != body_key:
        return None, _refusal(
            gettext("The %(header)s header and the body's %(field)s differ: send one key.")
            % {"header": HEADER, "field": body_field},
            "invalid_idempotency_key",
            status.HTTP_400_BAD_REQUEST,
        )
    return header or body_key, None


def _fingerprint(data) -> str:
    """The body as canonical JSON, hashed: the same JSON object in another key order is the same body."""
    if isinstance(data, QueryDict):
        data = dict(data.lists())
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _refusal(detail: str, code: str, status_code: int) -> Response:
    return Response({"detail": detail, "code": code}, status=status_code)


def _replay(earlier: IdempotencyKey, endpoint: str, fingerprint: str) -> Response:
    if earlier.endpoint != endpoint:
        return _refusal(
            gettext(
                "This %(header)s was used for %(earlier)s (within the last 24 hours): use a new key for "
                "%(endpoint)s. Nothing was done."
            )
            % {"header": HEADER, "earlier": earlier.endpoint, "endpoint": endpoint},
            "idempotency_key_reused",
            status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    if earlier.fingerprint != fingerprint:
        return _refusal(
            gettext(
                "This %(header)s was used with a different body on %(endpoint)s: a retry sends the same body; a "
                "new request needs a new key. Nothing was done."
            )
            % {"header": HEADER, "endpoint": endpoint},
            "idempotency_key_reused",
            status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    return Response(earlier.body, status=earlier.status_code, headers={REPLAYED_HEADER: "true"})


def keys_purge(*, now=None) -> int:
    """Delete the keys older than ``KEY_TTL`` (they are ignored anyway); returns how many went."""
    cutoff = (now or timezone.now()) - KEY_TTL
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def _once(view, request, key: str, call) -> Response:
    user = request.user
    endpoint = f"{request.method} {request.path}"[:300]
    fingerprint = _fingerprint(request.data)
    # An expired key is free again (and its row goes now, rather than waiting for keys_purge).
    IdempotencyKey.objects.filter(user=user, key=key, created_at__lt=timezone.now() - KEY_TTL).delete()
    record = None
    decided = False
    try:
        with transaction.atomic():
            for _ in range(2):
                try:
                    with transaction.atomic():
                        # On PostgreSQL this waits while a twin's transaction holds the same (user, key).
                        record = IdempotencyKey.objects.create(
                            user=user, key=key, endpoint=endpoint, fingerprint=fingerprint
                        )
                    break
                except IntegrityError:
                    earlier = IdempotencyKey.objects.filter(user=user, key=key).first()
                    if earlier is not None:
                        return _replay(earlier, endpoint, fingerprint)
                    # Deleted between the insert and the read (it had just expired): insert again.
            else:  # pragma: no cover - two misses in a row need two expiries within milliseconds
                return _refusal(gettext("Try again."), "idempotency_key_busy", status.HTTP_409_CONFLICT)
            try:
                response = call()
            except Exception as exc:
                # What DRF would answer (a service's refusal is a 4xx); what it cannot answer is raised and the
                # transaction, key included, rolls back.
                response = view.handle_exception(exc)
            if 200 <= response.status_code < 300:
                record.status_code = response.status_code
                record.body = response.data
                record.save(update_fields=["status_code", "body"])
            else:
                record.delete()
                record = None
            decided = True
    except Exception as exc:
        if not decided or record is None:
            raise
        # The write committed, and then a step that runs after the commit failed (the run's task could not be
        # queued: the run was deleted again). The answer kept is not what happened: drop it and answer the failure.
        IdempotencyKey.objects.filter(pk=record.pk).delete()
        return view.handle_exception(exc)
    return response


def idempotent(handler=None, *, body_field: str | None = None):
    """Make an API view's write handler honour ``Idempotency-Key`` (see the module's docstring).

    ``body_field`` names a body field that may carry the key instead of the header (the campaign review's
    ``idempotency_key``). Authentication and the permission classes have run when the handler is called, so a key is
    always some user's.
    """

    def wrap(method):
        @functools.wraps(method)
        def wrapper(view, request, *args, **kwargs):
            if not request.user.is_authenticated:
                return method(view, request, *args, **kwargs)
            key, refusal = _key_of(request, body_field)
            if refusal is not None:
                return refusal
            if key is None:
                return method(view, request, *args, **kwargs)
            return _once(view, request, key, lambda: method(view, request, *args, **kwargs))

        wrapper.idempotent = True
        return wrapper

    return wrap(handler) if handler is not None else wrap
