"""Written scenarios shipped with PsyRoom Admin (``data/scenarios.json``), and loading them into ``Scenario`` rows.

The file is a JSON list of ``{"sub_emotion", "title", "description", "language"}`` records; docs/data-formats.md
describes it.
"""

import json
from pathlib import Path

from django.db import transaction

from ..models import Language, Scenario, SubEmotion

SCENARIOS_FILE = Path(__file__).resolve().parent.parent / "data" / "scenarios.json"
FIELDS = ("sub_emotion", "title", "description", "language")
REQUIRED = ("sub_emotion", "title", "description")
_title_max = Scenario._meta.get_field("title").max_length
assert _title_max is not None, "Scenario.title is a CharField with a max_length"
TITLE_MAX: int = _title_max
# The same bound as a generated scenario's description (generation.schemas).
DESCRIPTION_MAX = 3000


class ScenarioLoadError(ValueError):
    """A scenarios file that can't be loaded; the message names the record and the field at fault."""


def _check(index: int, record, sub_emotions: dict[str, SubEmotion]) -> dict:
    where = f"record {index}"
    if not isinstance(record, dict):
        raise ScenarioLoadError(f"{where}: expected an object with {', '.join(REQUIRED)}, not {type(record).__name__}")
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise ScenarioLoadError(f"{where}: unknown field(s) {unknown} (known: {', '.join(FIELDS)})")
    values = {}
    for field in REQUIRED:
        value = record.get(field)
        if not isinstance(value, str) or not value.strip():
            problem = "is missing" if field not in record else "must be a non-empty string"
            raise ScenarioLoadError(f"{where}: {field} {problem}")
        values[field] = value.strip()
    if values["sub_emotion"] not in sub_emotions:
        raise ScenarioLoadError(
            f"{where}: sub_emotion {values['sub_emotion']!r} is not in the taxonomy (keys look like 'anxiety.1')"
        )
    if len(values["title"]) > TITLE_MAX:
        raise ScenarioLoadError(f"{where}: title is {len(values['title'])} characters long (at most {TITLE_MAX})")
    if len(values["description"]) > DESCRIPTION_MAX:
        raise ScenarioLoadError(
            f"{where}: description is {len(values['description'])} characters long (at most {DESCRIPTION_MAX})"
        )
    language = record.get("language", Language.ENGLISH)
    if language not in Language.values:
        raise ScenarioLoadError(f"{where}: language must be one of {', '.join(Language.values)}, not {language!r}")
    return {**values, "sub_emotion": sub_emotions[values["sub_emotion"]], "language": language}


def scenarios_load(*, path: Path = SCENARIOS_FILE) -> tuple[int, int]:
    """Load written scenarios from ``path``. Returns (created, unchanged).

    A scenario is keyed on its sub-emotion and title: one already there is left as it is (a curator may have edited
    it since), so loading the same file again changes nothing. Every record is checked before anything is written,
    and the writes are one transaction: a bad record anywhere raises ``ScenarioLoadError`` naming the file, the
    record index and the field, and nothing from that file is kept. The taxonomy must be loaded first.
    """
    sub_emotions = {sub.key: sub for sub in SubEmotion.objects.all()}
    if not sub_emotions:
        raise ScenarioLoadError("the taxonomy is not loaded: run `manage.py load_taxonomy` first")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ScenarioLoadError(f"{path}: cannot read the file: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ScenarioLoadError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ScenarioLoadError(f"{path}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}") from None
    if not isinstance(data, list):
        raise ScenarioLoadError(f"{path}: expected a JSON list of scenarios, not {type(data).__name__}")

    records = []
    first_seen: dict[tuple[str, str], int] = {}
    for index, record in enumerate(data):
        try:
            values = _check(index, record, sub_emotions)
        except ScenarioLoadError as error:
            raise ScenarioLoadError(f"{Path(path).name}: {error}") from None
        key = (values["sub_emotion"].key, values["title"].lower())
        if key in first_seen:
            raise ScenarioLoadError(
                f"{Path(path).name}: record {index}: title {values['title']!r} repeats record {first_seen[key]} "
                f"for {key[0]}"
            )
        first_seen[key] = index
        records.append(values)

    created = unchanged = 0
    with transaction.atomic():
        for values in records:
            exists = Scenario.objects.filter(sub_emotion=values["sub_emotion"], title__iexact=values["title"]).exists()
            if exists:
                unchanged += 1
                continue
            Scenario.objects.create(**values, source=Scenario.Source.WRITTEN)
            created += 1
    return created, unchanged
