"""The PII scan of a release: pure functions over text, no database.

A detector finds spans of one kind of personal data in a text. ``DETECTORS`` is the list a spec chooses from (by
name); a new kind is one more function and one more entry. ``scan`` runs the chosen detectors and resolves overlaps
(the earliest span wins, then the longest, then the detector listed first), ``redact`` replaces each span with its
detector's typed placeholder, and ``mask`` shows a span to a curator without giving it away.

Phone numbers are found by ``phonenumbers`` (Google's libphonenumber) over the regions in ``PHONE_REGIONS``, and only
numbers it holds valid for their region (``Leniency.VALID``), so dates, scores and case numbers are not numbers. A
mainland China resident ID is 17 digits and a check character (ISO 7064 MOD 11-2, GB 11643-1999) whose birth date
is a real date: a wrong check character is not an ID.
"""

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import phonenumbers

PHONE_REGIONS = ("CN", "US")
# The fewest digits a number ``phonenumbers`` holds valid can have, over every region it knows: a national number
# of CN (7) or US (10), or one in international format (+43 and 4 digits, Austria, Germany, Iran). A text with
# fewer digits is not given to its matcher, which costs about a millisecond a text (a test recomputes the bound from
# the library's metadata).
MIN_PHONE_DIGITS = 6
_DECIMAL = re.compile(r"\d")


@dataclass(frozen=True)
class Hit:
    start: int
    end: int
    detector: str


def _phones(text: str) -> Iterator[tuple[int, int]]:
    if len(_DECIMAL.findall(text)) < MIN_PHONE_DIGITS:  # any script's digits, as phonenumbers reads them
        return
    for region in PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            yield match.start, match.end


EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])", re.ASCII)


def _emails(text: str) -> Iterator[tuple[int, int]]:
    for match in EMAIL_RE.finditer(text):
        yield match.span()


ID_RE = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def cn_id_valid(number: str) -> bool:
    """Whether an 18-character mainland China resident ID has a real birth date and its check character."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], ID_WEIGHTS, strict=True))
    return ID_CHECK[total % 11] == number[17].upper()


def _cn_ids(text: str) -> Iterator[tuple[int, int]]:
    for match in ID_RE.finditer(text):
        if cn_id_valid(match.group()):
            yield match.span()


URL_RE = re.compile(r"(?:\bhttps?://|\bwww\.)[^\s<>\"'，。、；！？）】」]+", re.IGNORECASE)
URL_TRAILING = ".,;:!?)]}'\""


def _urls(text: str) -> Iterator[tuple[int, int]]:
    for match in URL_RE.finditer(text):
        start, end = match.span()
        while end > start and text[end - 1] in URL_TRAILING:
            end -= 1
        yield start, end


@dataclass(frozen=True)
class Detector:
    name: str
    placeholder: str
    find: Callable[[str], Iterator[tuple[int, int]]]


# In priority order: where two spans start at one place and are as long, the first listed wins (an ID number is
# never also read as a phone number).
DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector("cn_id", "[ID]", _cn_ids),
        Detector("email", "[EMAIL]", _emails),
        Detector("url", "[URL]", _urls),
        Detector("phone", "[PHONE]", _phones),
    )
}


_TRIGGERS = b"0123456789@"


def maybe(text: str) -> bool:
    """Whether ``text`` holds something a detector's span could start with: an ASCII digit, ``@``, ``www.`` or
    ``http`` in any case. Substring searches in the UTF-8 bytes, lowered as ASCII (no other character matches these
    letters, even ignoring case, and no byte of a longer UTF-8 sequence is ASCII): a regular expression for the same
    took ten times as long. A text without one is not scanned further."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data.translate(None, _TRIGGERS)) != len(data):  # one pass that drops the digits and @
        return True
    lowered = data.lower()
    return b"www." in lowered or b"http" in lowered


def scan(text: str, detectors: list[str] | tuple[str, ...] = tuple(DETECTORS)) -> list[Hit]:
    """The spans of personal data in ``text``, in order and not overlapping."""
    if not text or not maybe(text):
        return []
    order = list(DETECTORS)
    found = [
        (start, -(end - start), order.index(name), Hit(start, end, name))
        for name in detectors
        for start, end in DETECTORS[name].find(text)
        if end > start
    ]
    hits: list[Hit] = []
    for _, _, _, hit in sorted(found, key=lambda f: f[:3]):
        if not hits or hit.start >= hits[-1].end:
            hits.append(hit)
    return hits


def redact(text: str, hits: list[Hit]) -> str:
    """``text`` with each hit replaced by its detector's placeholder (``[PHONE]``, ``[EMAIL]``, ``[ID]``, ``[URL]``)."""
    parts, last = [], 0
    for hit in hits:
        parts += [text[last : hit.start], DETECTORS[hit.detector].placeholder]
        last = hit.end
    parts.append(text[last:])
    return "".join(parts)


def mask(span: str) -> str:
    """A span as a curator sees it in a blocked build's report: its first two and last two characters, the rest
    starred (all starred when it is short)."""
    if len(span) <= 6:
        return "*" * len(span)
    return span[:2] + "*" * min(len(span) - 4, 20) + span[-2:]


# --- Candidate content ------------------------------------------------------------------------------------------


def text_fields(kind: str, content: dict) -> Iterator[tuple[str, str]]:
    """The written texts of a candidate's content, each with where it lies (``turns[3].text``, ``question``)."""
    if kind == "question":
        for key in ("question", "explanation"):
            if isinstance(content.get(key), str):
                yield key, content[key]
        options = content.get("options")
        if isinstance(options, dict):
            for key in sorted(options):
                if isinstance(options[key], str):
                    yield f"options.{key}", options[key]
        for index, answer in enumerate(content.get("answers") or []):
            if isinstance(answer, dict) and isinstance(answer.get("rationale"), str):
                yield f"answers[{index}].rationale", answer["rationale"]
        return
    for index, turn in enumerate(content.get("turns") or []):
        if isinstance(turn, dict) and isinstance(turn.get("text"), str):
            yield f"turns[{index}].text", turn["text"]


def _set(content: dict, where: str, value: str) -> None:
    if where.startswith("turns["):
        content["turns"][int(where[6 : where.index("]")])]["text"] = value
    elif where.startswith("answers["):
        content["answers"][int(where[8 : where.index("]")])]["rationale"] = value
    elif where.startswith("options."):
        content["options"][where[8:]] = value
    else:
        content[where] = value


def scan_content(kind: str, content: dict, detectors: list[str]) -> tuple[list[tuple[str, Hit, str]], dict]:
    """The hits in a candidate's written texts, each as (where, hit, the matched text), and the content with every
    hit redacted (a copy; ``content`` itself is left alone; the same object when there is no hit)."""
    hits: list[tuple[str, Hit, str]] = []
    redacted: dict | None = None
    if kind != "question":  # most contents: one look at the turns' texts, not one a field
        turns = content.get("turns") or []
        texts = [t["text"] for t in turns if isinstance(t, dict) and isinstance(t.get("text"), str)]
        if not maybe("\n".join(texts)):
            return hits, content
    for where, text in list(text_fields(kind, content)):
        found = scan(text, detectors)
        if not found:
            continue
        hits += [(where, hit, text[hit.start : hit.end]) for hit in found]
        if redacted is None:
            redacted = _copy(content)
        _set(redacted, where, redact(text, found))
    return hits, redacted if redacted is not None else content


def _copy(content: dict) -> dict:
    out = dict(content)
    if isinstance(content.get("turns"), list):
        out["turns"] = [dict(t) if isinstance(t, dict) else t for t in content["turns"]]
    if isinstance(content.get("answers"), list):
        out["answers"] = [dict(a) if isinstance(a, dict) else a for a in content["answers"]]
    if isinstance(content.get("options"), dict):
        out["options"] = dict(content["options"])
    return out
