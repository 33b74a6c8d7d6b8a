"""Model specs: the default one (the bundled model's is created on first use) and their editing, admins only."""

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from psyroom_admin import roles

from ..models import ModelSpec

BUNDLED_MODEL = "smollm2-135m-instruct"


def modelspec_get_default() -> ModelSpec:
    """The spec named by ``PSYROOM_MODEL``; the bundled model's spec is created on first use."""
    name = settings.PSYROOM_MODEL
    if name == BUNDLED_MODEL:
        spec, _ = ModelSpec.objects.get_or_create(
            name=BUNDLED_MODEL,
            defaults={
                "backend": ModelSpec.Backend.TRANSFORMERS,
                "path": f"bundled:{BUNDLED_MODEL}",
                "batch_size": 8,
                "parameters": {"max_new_tokens": 96, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.2},
            },
        )
        return spec
    try:
        return ModelSpec.objects.get(name=name)
    except ModelSpec.DoesNotExist:
        raise ValidationError(f"PSYROOM_MODEL={name!r}: no model spec of that name") from None


def modelspec_save(*, spec: ModelSpec, user: User | None = None) -> ModelSpec:
    """Create or change a model spec; ``user`` is who asks (None from the command line): admins only.

    The spec is validated in full first: an HTTP spec's ``base_url`` must lie under ``PSYROOM_MODEL_SERVERS`` and
    its credential (``api_key_env``) be a name in ``PSYROOM_MODEL_CREDENTIALS`` (``generation.validators``).
    """
    if user is not None and not roles.user_can_edit_model_specs(user):
        raise PermissionDenied("Only admins may add or change model specs.")
    spec.full_clean()
    with transaction.atomic():
        spec.save()
    return spec
