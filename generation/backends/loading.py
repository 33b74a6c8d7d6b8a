"""The backend of a model spec, loaded once per worker process and kept."""

import os
import threading

from django.conf import settings
from django.core.exceptions import ValidationError

from .. import validators
from .base import Backend, ModelLoadError
from .local import TransformersBackend
from .server import OpenAIBackend

_loaded: dict[str, Backend] = {}
_lock = threading.Lock()


def _backend_load(spec) -> Backend:
    if spec.backend == "transformers":
        device = settings.PSYROOM_DEVICE if spec.device == "auto" else spec.device
        return TransformersBackend(name=spec.name, path=spec.path, device=device, dtype=spec.dtype)
    if spec.backend == "openai":
        return OpenAIBackend(
            name=spec.name,
            model=spec.path,
            base_url=_allowed_server(spec),
            api_key=_credential(spec),
            timeout_s=spec.timeout_s,
            max_retries=spec.max_retries,
            batch_size=spec.batch_size,
        )
    raise ModelLoadError(f"unknown backend {spec.backend!r} for model spec {spec.name!r}")


def _allowed_server(spec) -> str:
    """The spec's base URL, checked again here: a row saved before the check, or written straight into the
    database, must not send a request anywhere the operator has not allowed."""
    if not spec.base_url:
        raise ModelLoadError(
            f"model spec {spec.name!r}: the openai backend needs a base_url (e.g. http://host:8000/v1)"
        )
    try:
        validators.model_server_check(spec.base_url)
    except ValidationError as error:
        raise ModelLoadError(f"model spec {spec.name!r}: base_url {' '.join(error.messages)}") from None
    return spec.base_url


def _credential(spec) -> str:
    """The key of the spec's credential, read from the environment variable that ``PSYROOM_MODEL_CREDENTIALS``
    names for it; "" for a spec without one. The spec only ever names a credential, never a variable."""
    if not spec.api_key_env:
        return ""
    try:
        variable = validators.credential_variable(spec.api_key_env)
    except ValidationError as error:
        raise ModelLoadError(f"model spec {spec.name!r}: credential {' '.join(error.messages)}") from None
    api_key = os.environ.get(variable, "")
    if not api_key:
        raise ModelLoadError(
            f"model spec {spec.name!r}: the environment variable {variable} of credential {spec.api_key_env!r} "
            "is not set on this worker"
        )
    return api_key


def backend_for(spec) -> Backend:
    """The backend of a ModelSpec, loaded on first use in this process and kept."""
    with _lock:
        if spec.name not in _loaded:
            _loaded[spec.name] = _backend_load(spec)
        return _loaded[spec.name]
