"""Where an HTTP model spec may send its requests, and which key it may send: only what the operator allowed.

A model spec is a database row; the servers it may reach (``PSYROOM_MODEL_SERVERS``) and the credentials it may
name (``PSYROOM_MODEL_CREDENTIALS``) are settings. Without these checks whoever edits a spec could point the worker
at any address it can reach and have it send any variable of its environment (``SECRET_KEY``, ``DATABASE_URL``) as
a Bearer token. The same functions run when a spec is saved (``ModelSpec.clean``,
``services.modelspecs.modelspec_save``) and again when a worker loads one (``backends.loading.backend_for``), for rows
written before these rules or straight into the database.
"""

from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

_DEFAULT_PORTS = {"http": 80, "https": 443}


def credential_variable(name: str) -> str:
    """The environment variable that holds the credential ``name``, from ``PSYROOM_MODEL_CREDENTIALS``.

    Raises ``ValidationError`` for a name that is not there: a spec names a credential, never a variable.
    """
    allowed = settings.PSYROOM_MODEL_CREDENTIALS
    if name not in allowed:
        known = ", ".join(sorted(allowed)) or "none are set"
        raise ValidationError(
            f"{name!r} is not a credential name in the PSYROOM_MODEL_CREDENTIALS setting (known: {known})",
            code="unknown_credential",
        )
    return allowed[name]


def _url_parts(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL, the port filled in; ValueError for anything else."""
    # urlsplit and urllib.request do not parse alike (urlsplit drops tabs and newlines, for one): a URL with anything
    # that could make them disagree is refused rather than interpreted.
    if not url.isascii() or any(not ch.isprintable() or ch.isspace() or ch in "\\@?#" for ch in url):
        raise ValueError("a space, control character, backslash, @, ? or # in the URL")
    parsed = urlsplit(url)
    scheme = parsed.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parsed.hostname:
        raise ValueError("not an http:// or https:// URL with a host")
    # ``port`` raises ValueError on "gpu-1:8000.evil.com": the lookalike never reaches the comparison.
    port = parsed.port if parsed.port is not None else _DEFAULT_PORTS[scheme]
    segments = unquote(parsed.path).split("/")
    if "." in segments or ".." in segments:
        raise ValueError("a . or .. segment in the path")
    return scheme, parsed.hostname, port, "/".join(segments).rstrip("/")


def _is_under(url: tuple[str, str, int, str], prefix: tuple[str, str, int, str]) -> bool:
    """Same scheme, host and port, and the path is the prefix's path or below it (whole segments: /v1 is not
    under /v)."""
    if url[:3] != prefix[:3]:
        return False
    return url[3] == prefix[3] or url[3].startswith(prefix[3] + "/")


def model_server_check(url: str) -> None:
    """Raise ``ValidationError`` unless ``url`` lies under one of the ``PSYROOM_MODEL_SERVERS`` prefixes.

    Scheme, host and port are compared exactly after parsing and the path by whole segments, never as strings:
    ``http://gpu-1:8000.evil.com/v1``, ``http://gpu-1:8000@evil.com/v1`` and ``http://gpu-1:8000/v1/../admin`` are
    all refused when the setting holds ``http://gpu-1:8000/v1``.
    """
    try:
        parts = _url_parts(url)
    except ValueError as error:
        raise ValidationError(f"{url!r} is not a usable model server URL ({error})", code="bad_url") from None
    for prefix in settings.PSYROOM_MODEL_SERVERS:
        try:
            if _is_under(parts, _url_parts(prefix)):
                return
        except ValueError:
            continue  # the setting was checked at start; a bad entry allows nothing
    known = ", ".join(settings.PSYROOM_MODEL_SERVERS) or "none are set"
    raise ValidationError(
        f"{url!r} is not under a server in the PSYROOM_MODEL_SERVERS setting (allowed: {known})",
        code="server_not_allowed",
    )


def modelspec_check(*, backend: str, base_url: str, api_key_env: str) -> None:
    """The rules of a spec's server and credential, as one ``ValidationError`` keyed by field.

    A base URL or credential is checked whenever it is set, whatever the backend, so that switching a spec's backend
    later cannot bring an unchecked value into use.
    """
    errors: dict[str, list[str]] = {}
    if base_url:
        try:
            model_server_check(base_url)
        except ValidationError as error:
            errors["base_url"] = error.messages
    elif backend == "openai":
        errors["base_url"] = ["The openai backend needs a base URL (e.g. http://gpu-1:8000/v1)."]
    if api_key_env:
        try:
            credential_variable(api_key_env)
        except ValidationError as error:
            errors["api_key_env"] = error.messages
    if errors:
        raise ValidationError(errors)
