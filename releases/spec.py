"""A release spec: what a release selects and writes. ``spec_validate`` checks a spec read from JSON or YAML and
returns it complete (every default filled in), so that the stored spec alone says what was built.

Each refusal is a ``ValidationError`` whose dict key is the field's path (``splits.train``, ``sub_emotions``), and
whose message names the value refused.
"""

import datetime as dt
import json
import math
from pathlib import Path

import yaml
from django.core.exceptions import ValidationError

from annotations.models import Campaign, Rubric
from annotations.rubrics import DEFAULTS as DEFAULT_RUBRICS
from generation.models import CandidateKind, EmotionCategory, Language, ModelSpec, SubEmotion

from .agreement import agreement_available
from .pii import DETECTORS

# The kinds a spec may name, and the kind each format writes. ``courses`` writes sessions (each with its course's
# profile and the earlier sessions' memories); no format writes a course on its own, so ``kinds: [course]`` is refused.
KINDS = (
    CandidateKind.DIALOGUE,
    CandidateKind.PLAN,
    CandidateKind.COURSE,
    CandidateKind.SESSION,
    CandidateKind.QUESTION,
)
FORMAT_KINDS: dict[str, str] = {
    "sft": CandidateKind.DIALOGUE,
    "sharegpt": CandidateKind.DIALOGUE,
    "dpo": CandidateKind.DIALOGUE,
    "grpo": CandidateKind.QUESTION,
    "reasoning-sft": CandidateKind.QUESTION,
    "courses": CandidateKind.SESSION,
    "plans": CandidateKind.PLAN,
}
SPLITS = ("train", "validation", "test")
FIELDS = {
    "kinds",
    "formats",
    "campaigns",
    "sub_emotions",
    "categories",
    "languages",
    "dates",
    "min_approvals",
    "min_mean",
    "min_agreement",
    "edited_only",
    "model_specs",
    "prompt_versions",
    "splits",
    "dedup",
    "dpo",
    "pii",
    "parquet",
}
MAX_LIST = 10_000
MAX_ID = 2**63 - 1
MAX_SEED = 2**32 - 1
DEFAULT_SPLITS = {"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 0}
DEFAULT_DPO = {"max_similarity": 0.95}
PII_ACTIONS = ("block", "redact")


def _refuse(path: str, message: str) -> ValidationError:
    return ValidationError({path: [message]})


def _unknown(path: str, names) -> ValidationError:
    listed = ", ".join(repr(n) for n in sorted(names, key=str))
    return _refuse(path, f"unknown {listed}")


def _object(value, path: str, allowed: set[str]) -> dict:
    if not isinstance(value, dict):
        raise _refuse(path or "spec", "must be an object")
    extra = set(value) - allowed
    if extra:
        name = str(sorted(extra, key=str)[0])
        raise _refuse(f"{path}.{name}" if path else name, f"unknown field (known: {', '.join(sorted(allowed))})")
    return value


def _strings(value, path: str, *, max_length: int = 100) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise _refuse(path, f"must be a list of at most {MAX_LIST} strings")
    for item in value:
        if not isinstance(item, str) or not item or len(item) > max_length:
            raise _refuse(path, f"{item!r} is not a name (a string of 1 to {max_length} characters)")
    return sorted(set(value))


def _ids(value, path: str) -> list[int]:
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise _refuse(path, f"must be a list of at most {MAX_LIST} ids")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= MAX_ID:
            raise _refuse(path, f"{item!r} is not an id")
    return sorted(set(value))


def _number(value, path: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _refuse(path, f"must be a number from {low} to {high}, not {value!r}")
    if not low <= value <= high:
        raise _refuse(path, f"must be from {low} to {high}, not {value!r}")
    return float(value)


def _integer(value, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _refuse(path, f"must be a whole number from {low} to {high}, not {value!r}")
    return value


def _bool(value, path: str) -> bool:
    if not isinstance(value, bool):
        raise _refuse(path, f"must be true or false, not {value!r}")
    return value


def _date(value, path: str) -> str:
    if not isinstance(value, str):
        raise _refuse(path, f"must be a date (YYYY-MM-DD), not {value!r}")
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise _refuse(path, f"must be a date (YYYY-MM-DD), not {value!r}") from None


def _known(path: str, asked: list, found) -> None:
    missing = set(asked) - set(found)
    if missing:
        raise _unknown(path, missing)


def _criteria() -> set[str]:
    keys = {c["key"] for rubric in DEFAULT_RUBRICS.values() for c in rubric["criteria"]}
    for criteria in Rubric.objects.values_list("criteria", flat=True):
        keys |= {c["key"] for c in criteria if isinstance(c, dict) and isinstance(c.get("key"), str)}
    return keys


def _min_agreement(value) -> float | None:
    """Krippendorff's alpha on the decision that a campaign must reach for its candidates to be selected (as the
    dashboards compute it); None: no floor."""
    if value is None:
        return None
    floor = _number(value, "min_agreement", -1, 1)
    if not agreement_available():
        raise _refuse("min_agreement", "the campaigns' agreement cannot be computed here (no dashboards app)")
    return floor


def spec_validate(raw) -> dict:
    """The spec complete and normalized (lists sorted and without repeats, defaults filled in), or a
    ``ValidationError`` naming the first field refused."""
    spec = _object(raw, "", FIELDS)
    if "formats" not in spec:
        raise _refuse("formats", f"name one or more of {', '.join(FORMAT_KINDS)}")
    formats = _strings(spec["formats"], "formats")
    if not formats:
        raise _refuse("formats", f"name one or more of {', '.join(FORMAT_KINDS)}")
    unknown = set(formats) - set(FORMAT_KINDS)
    if unknown:
        raise _unknown("formats", unknown)
    written = {FORMAT_KINDS[f] for f in formats}
    kinds = _strings(spec["kinds"], "kinds") if "kinds" in spec else sorted(written)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise _unknown("kinds", unknown)
    for kind in kinds:
        if kind not in written:
            raise _refuse("kinds", f"no format of this release writes {kind!r} (formats: {', '.join(formats)})")
    for fmt in formats:
        if FORMAT_KINDS[fmt] not in kinds:
            raise _refuse("formats", f"{fmt!r} writes {FORMAT_KINDS[fmt]!r}, which kinds leaves out")

    out: dict = {"kinds": kinds, "formats": formats}
    out["campaigns"] = _ids(spec.get("campaigns", []), "campaigns")
    _known("campaigns", out["campaigns"], Campaign.objects.filter(pk__in=out["campaigns"]).values_list("pk", flat=True))
    out["sub_emotions"] = _strings(spec.get("sub_emotions", []), "sub_emotions", max_length=32)
    _known(
        "sub_emotions",
        out["sub_emotions"],
        SubEmotion.objects.filter(key__in=out["sub_emotions"]).values_list("key", flat=True),
    )
    out["categories"] = _strings(spec.get("categories", []), "categories", max_length=32)
    _known(
        "categories",
        out["categories"],
        EmotionCategory.objects.filter(key__in=out["categories"]).values_list("key", flat=True),
    )
    out["languages"] = _strings(spec.get("languages", []), "languages", max_length=8)
    _known("languages", out["languages"], Language.values)
    dates = _object(spec.get("dates", {}), "dates", {"from", "to"})
    out["dates"] = {k: _date(dates[k], f"dates.{k}") for k in ("from", "to") if dates.get(k) is not None}
    if len(out["dates"]) == 2 and out["dates"]["from"] > out["dates"]["to"]:
        raise _refuse("dates", f"from ({out['dates']['from']}) is after to ({out['dates']['to']})")
    out["min_approvals"] = _integer(spec.get("min_approvals", 0), "min_approvals", 0, 100)
    min_mean = _object(spec.get("min_mean", {}), "min_mean", _criteria())
    out["min_mean"] = {k: _number(v, f"min_mean.{k}", 1, 5) for k, v in sorted(min_mean.items())}
    out["min_agreement"] = _min_agreement(spec.get("min_agreement"))
    out["edited_only"] = _bool(spec.get("edited_only", False), "edited_only")
    out["model_specs"] = _strings(spec.get("model_specs", []), "model_specs")
    _known(
        "model_specs",
        out["model_specs"],
        ModelSpec.objects.filter(name__in=out["model_specs"]).values_list("name", flat=True),
    )
    out["prompt_versions"] = _strings(spec.get("prompt_versions", []), "prompt_versions", max_length=32)

    splits = _object(spec.get("splits", DEFAULT_SPLITS), "splits", {*SPLITS, "seed"})
    ratios = {name: _number(splits.get(name, 0), f"splits.{name}", 0, 1) for name in SPLITS}
    if not math.isclose(sum(ratios.values()), 1.0, abs_tol=1e-9):
        raise _refuse("splits", f"train, validation and test must sum to 1, not {sum(ratios.values()):g}")
    out["splits"] = {**ratios, "seed": _integer(splits.get("seed", 0), "splits.seed", 0, MAX_SEED)}
    dedup = _object(spec.get("dedup", {"exact": True}), "dedup", {"exact", "near"})
    near = dedup.get("near")
    out["dedup"] = {
        "exact": _bool(dedup.get("exact", True), "dedup.exact"),
        # The MinHash Jaccard threshold above which a later item is a near-duplicate of an earlier one; None: off.
        "near": None if near is None else _number(near, "dedup.near", 0.5, 1),
    }
    dpo = _object(spec.get("dpo", DEFAULT_DPO), "dpo", {"max_similarity"})
    out["dpo"] = {"max_similarity": _number(dpo.get("max_similarity", 0.95), "dpo.max_similarity", 0, 1)}
    pii = _object(spec.get("pii", {}), "pii", {"action", "detectors"})
    action = pii.get("action", "block")
    if action not in PII_ACTIONS:
        raise _refuse("pii.action", f"must be one of {', '.join(PII_ACTIONS)}, not {action!r}")
    detectors = _strings(pii.get("detectors", list(DETECTORS)), "pii.detectors", max_length=32)
    unknown = set(detectors) - set(DETECTORS)
    if unknown:
        raise _unknown("pii.detectors", unknown)
    out["pii"] = {"action": action, "detectors": detectors}
    out["parquet"] = _bool(spec.get("parquet", True), "parquet")
    return out


def spec_read(path: Path) -> dict:
    """A spec file's contents: YAML (``.yaml``, ``.yml``) or JSON; not yet validated."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        if Path(path).suffix.lower() in {".yaml", ".yml"}:
            return yaml.safe_load(text)
        return json.loads(text)
    except (yaml.YAMLError, ValueError) as error:
        raise ValidationError({"spec": [f"{path} cannot be read: {error}"]}) from None
