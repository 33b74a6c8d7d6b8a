"""The answers every operation may give, added to the OpenAPI schema in one place (a drf-spectacular hook).

Each view declares what its own rules answer (201, 409, its 400 with the fields it checks); the answers that come
from the API's edge and from DRF are the same for all, so they are added here where an operation does not declare
them already:

- 400: the edge refused the input (``psyroom_admin.edge``: a NUL byte or a lone surrogate, JSON nested too deep or
  not JSON at all, paging out of bounds), on every operation, since any query string is checked;
- 401: no credentials, where the operation needs them; 403: the role may not (every operation but the token's);
- 404: no such object, or none you may see, where the path names one;
- 413 and 415: a body too large or of a type the API does not read, where the operation takes a body.
"""

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
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorDetail"] = ERROR
    components["InvalidInput"] = INVALID
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}}
    invalid = {"application/json": {"schema": {"$ref": "#/components/schemas/InvalidInput"}}}
    for path, item in result.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            anonymous = {} in operation.get("security", [{}])
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
