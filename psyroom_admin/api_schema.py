"""The answers every operation may give, added to the OpenAPI schema in one place (a drf-spectacular hook).

Each view declares what its own rules answer (201, 409, its 400 with the fields it checks); the answers that come
from the API's edge and from DRF are the same for all, so they are added here where an operation does not declare
them already:

- 400: the edge refused the input (``psyroom_admin.edge``: a NUL byte or a lone surrogate, JSON nested too deep or
  not JSON at all, paging out of bounds), on every operation, since any query string is checked;
- 401: no credentials, where the operation needs them; 403: the role may not (every operation but the token's);
- 404: no such object, or none you may see, where the path names one;
- 413 and 415: a body too large or of a type the API does not read, where the operation takes a body.

Every write (POST, PUT, PATCH, DELETE) that needs credentials also takes the ``Idempotency-Key`` header
(``psyroom_admin.idempotency``: its view is wrapped with ``@idempotent``) and may answer 422 when a key is used again
with another body or on another endpoint.
"""

from .idempotency import MAX_KEY_LENGTH

WRITES = {"post", "put", "patch", "delete"}

IDEMPOTENCY_HEADER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[\\x21-\\x7e]+$"},
    "description": "Makes a retry safe: the same key (yours, on this endpoint, within 24 hours) with the same body "
    "answers the first success again, status and body, and writes nothing more; with another body it is a 422. "
    "1 to 64 visible ASCII characters; a UUID is a good key.",
}

IDEMPOTENCY_ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "required": ["detail", "code"],
}

ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
# A 400 names what is wrong: ``{detail}`` from the edge, ``{field: [messages]}`` (nested for nested input) from a
# serializer or a service.
INVALID = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}

COMMON = {
    "400": "Invalid input: {field: [messages]}, or {detail} naming where the edge refused it "
    "(a NUL byte or a lone surrogate, JSON nested too deep, a page out of bounds)",
    "401": "Not authenticated",
    "403": "Your role may not do this",
    "404": "No such object, or none you may see",
    "413": "The request body is too large",
    "415": "A body type the API does not read",
}


def add_common_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: add the shared error answers (see the module's docstring)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorDetail"] = ERROR
    schemas["InvalidInput"] = INVALID
    schemas["IdempotencyKeyReused"] = IDEMPOTENCY_ERROR
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}}
    invalid = {"application/json": {"schema": {"$ref": "#/components/schemas/InvalidInput"}}}
    reused = {"application/json": {"schema": {"$ref": "#/components/schemas/IdempotencyKeyReused"}}}
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            anonymous = {} in operation.get("security", [{}])
            if method in WRITES and not anonymous:
                operation.setdefault("parameters", []).append(IDEMPOTENCY_HEADER)
                operation["responses"].setdefault(
                    "422",
                    {
                        "description": "The Idempotency-Key was used before with another body or on another "
                        'endpoint: nothing was done ({"detail", "code": "idempotency_key_reused"})',
                        "content": reused,
                    },
                )
            codes = ["400"]
            if not anonymous:
                codes += ["401", "403"]
            if "{" in path:
                codes.append("404")
            if "requestBody" in operation:
                codes += ["413", "415"]
            for code in codes:
                if code not in operation["responses"]:
                    content = invalid if code == "400" else error
                    operation["responses"][code] = {"description": COMMON[code], "content": content}
    return result
