"""What an edit changed: the texts of two contents of one candidate, place by place."""

# Not texts a person writes or reads as the item: the model's raw answer, a parse error, the model's name.
_NOT_TEXT = frozenset({"raw", "error", "model"})


def _texts(value, where: str):
    """(where, text) for every piece of text in a content; a dialogue's turns are named as the page numbers them."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "turns" and isinstance(item, list):
                for i, turn in enumerate(item):
                    if isinstance(turn, dict):
                        yield f"turn {i + 1} ({turn.get('role', '?')})", str(turn.get("text", ""))
            elif key not in _NOT_TEXT:
                yield from _texts(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _texts(item, f"{where}[{i + 1}]")


def content_changes(before: dict, after: dict) -> list[dict]:
    """``[{"where", "before", "after"}]`` for every text that differs between two contents, in the order of
    ``after`` (then what ``after`` no longer has); an added text has ``before`` "", a removed one ``after`` ""."""
    old = dict(_texts(before, ""))
    new = dict(_texts(after, ""))
    places = [*new, *(where for where in old if where not in new)]
    return [
        {"where": where, "before": old.get(where, ""), "after": new.get(where, "")}
        for where in places
        if old.get(where, "") != new.get(where, "")
    ]
