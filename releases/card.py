"""The dataset card (``README.md``) of a release, in the Hugging Face format: a YAML header the Hub reads (licence,
languages, task categories, size, one config per format with its splits' files), then a datasheet for people.

Written from the manifest alone, with no time in it, so the same build gives the same bytes (the card is a hashed
file of the release like any other). It names the release but not its version: a rebuild is a new version of the
same spec and data, and its card is the same file (the version is in ``manifest.json``).
"""

import yaml

from .splits import SPLITS

# Licence names as sources give them, and the Hub's identifiers for them.
LICENSES = {
    "cc0 1.0": "cc0-1.0",
    "cc0-1.0": "cc0-1.0",
    "cc by 4.0": "cc-by-4.0",
    "cc-by-4.0": "cc-by-4.0",
    "cc by-sa 4.0": "cc-by-sa-4.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0",
    "cc by-nc 4.0": "cc-by-nc-4.0",
    "cc-by-nc-4.0": "cc-by-nc-4.0",
    "cc by-nc-sa 4.0": "cc-by-nc-sa-4.0",
    "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0",
    "mit": "mit",
    "apache-2.0": "apache-2.0",
    "apache 2.0": "apache-2.0",
}
TASKS = {
    "sft": ["text-generation"],
    "sharegpt": ["text-generation"],
    "dpo": ["text-generation"],
    "grpo": ["question-answering", "text-generation"],
    "reasoning-sft": ["question-answering", "text-generation"],
    "courses": ["text-generation"],
    "plans": ["text-generation"],
}
FORMAT_TEXT = {
    "sft": "chat `messages` (TRL SFTTrainer, OpenAI fine-tuning)",
    "sharegpt": "ShareGPT `conversations` (`from`: system, human, gpt)",
    "dpo": "preference pairs from counselor edits (`prompt`, `chosen`, `rejected`; TRL DPOTrainer)",
    "grpo": "hard closed questions with their verified answer (`prompt`, `answer`)",
    "reasoning-sft": "easy questions with their best rationale as `<think>` reasoning (`messages`)",
    "courses": "one counseling session each, the client's profile and the earlier sessions' approved memories in "
    "the system message (`messages`; MusPsy)",
    "plans": "treatment plan sections from a counseling dialogue (`instruction`, `input`, `output`; PsyRoom B)",
}
GATES = (
    "approved candidates only, each as the revision its reviewers approved (never a later edit)",
    "nothing with an open risk flag (suicide, self-harm and the like; a senior clinician signs flags off)",
    "review thresholds of the spec (minimum approvals, minimum mean score per criterion)",
)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _licenses(sources: dict) -> tuple[list[str], list[str]]:
    """The Hub identifiers of the sources' licences, and the names of those it has none for."""
    known, other = set(), set()
    for name, source in sources.items():
        licence = source.get("license")
        found = LICENSES.get(str(licence).strip().lower()) if licence else None
        if found:
            known.add(found)
        else:
            other.add(f"{name}: {licence}" if licence else f"{name}: no licence recorded")
    return sorted(known), sorted(other)


def header(manifest: dict) -> dict:
    spec = manifest["spec"]
    known, other = _licenses(manifest["sources"])
    licence: str | list[str] = [*known, "other"] if other else known
    if isinstance(licence, list) and len(licence) == 1:
        licence = licence[0]
    files = {f["name"] for f in manifest["files"]}
    suffix = "parquet" if spec.get("parquet") else "jsonl"
    configs = []
    for fmt in spec["formats"]:
        data_files = [
            {"split": split, "path": f"{fmt}/{split}.{suffix}"}
            for split in SPLITS
            if f"{fmt}/{split}.{suffix}" in files
        ]
        configs.append({"config_name": fmt, "data_files": data_files})
    rows = sum(f["rows"] for f in manifest["files"] if f["name"].endswith(".jsonl"))
    out: dict = {
        "license": licence or "other",
        "language": manifest.get("languages") or spec["languages"] or ["en", "zh"],
        "task_categories": sorted({t for fmt in spec["formats"] for t in TASKS[fmt]}),
        "size_categories": [_size_category(rows)],
        "pretty_name": manifest["release"]["name"],
        "tags": ["mental-health", "counseling", "psychology"],
        "configs": configs,
    }
    if other:
        out["license_name"] = "other"
        out["license_details"] = "; ".join(other)
    return out


def _table(rows: list[list[str]], head: list[str]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def card_text(manifest: dict) -> str:
    """The README.md of a release (its manifest complete but for the card's own entry in ``files``)."""
    spec = manifest["spec"]
    release = manifest["release"]
    yaml_text = yaml.safe_dump(header(manifest), allow_unicode=True, sort_keys=False, default_flow_style=False)
    out = ["---", yaml_text.rstrip("\n"), "---", "", f"# {release['name']}", ""]
    out += [
        "## Motivation",
        "",
        "Counseling dialogues, preference pairs and exam questions for training and evaluating models that support "
        "people in emotional distress, built by PsyRoom Admin from items its clinicians reviewed and approved. "
        "Every file can be rebuilt byte for byte from the spec below on the same data.",
        "",
        "## Composition",
        "",
        f"{manifest['candidates']} candidates in {manifest['groups']} groups (a scenario, a client profile or a "
        "source dialogue lies in one split only).",
        "",
    ]
    counts = []
    for split in SPLITS:
        for kind, by_emotion in sorted(manifest["counts"].get(split, {}).items()):
            counts += [[split, kind, emotion, str(n)] for emotion, n in sorted(by_emotion.items())]
    out += _table(counts, ["split", "kind", "sub-emotion", "candidates"]) + [""]
    out += ["Files (rows; the sha256 of each is in `manifest.json`):", ""]
    out += _table(
        [[f"`{f['name']}`", str(f["rows"]), FORMAT_TEXT.get(f["name"].split("/")[0], "")] for f in manifest["files"]],
        ["file", "rows", "format"],
    ) + [""]
    out += ["## Collection", "", "Models and prompt versions behind the data:", ""]
    models = manifest["models"]
    out += (
        _table([[m["model_spec"], m["prompt_version"], str(m["candidates"])] for m in models], ["model", "prompt", "n"])
        if models
        else ["None: no item in this release was generated."]
    )
    out += ["", "Sources:", ""]
    out += _table(
        [
            [name, str(s.get("license") or "not recorded"), str(s.get("attribution") or ""), str(s["candidates"])]
            for name, s in manifest["sources"].items()
        ],
        ["source", "licence", "attribution", "candidates"],
    )
    out += [
        "",
        "## Review process",
        "",
        f"Every item was reviewed by clinicians on a rubric and approved under the review policy"
        f"{' (' + manifest['policy'] + ')' if manifest.get('policy') else ''}; "
        f"{manifest['reviewers']} distinct reviewers approved the items of this release (a count; no names or ids).",
    ]
    if spec["campaigns"]:
        out.append(f"Drawn from review campaigns {', '.join(str(c) for c in spec['campaigns'])}.")
    if spec["min_approvals"] or spec["min_mean"]:
        out.append(f"Thresholds: at least {spec['min_approvals']} approvals, minimum means {spec['min_mean'] or '-'}.")
    out += _agreement_lines(manifest, spec)
    out += ["", "## Risk handling", "", "Checked when the release was built, not trusted from earlier:", ""]
    out += [f"- {gate}" for gate in GATES]
    dropped = manifest["dropped"]
    if dropped:
        out += ["", "Left out at build time:", ""]
        out += [f"- {reason}: {n}" for reason, n in dropped.items()]
    pii = manifest["pii"]
    out += [
        "",
        "## Personal data",
        "",
        f"Every written text was scanned for {', '.join(pii['detectors'])} (phone numbers with libphonenumber, "
        "mainland China resident IDs with their check digit). "
        + (
            f"The spec redacts: {len(pii['hits'])} hits were replaced by typed placeholders "
            "(`[PHONE]`, `[EMAIL]`, `[ID]`, `[URL]`), each listed in `manifest.json`."
            if pii["action"] == "redact"
            else "The spec blocks: a build with any hit fails, so this release has none the detectors find."
        ),
        "",
        "## Known limits",
        "",
        "- Dialogues are generated or reconstructed by language models and reviewed by people; they are not "
        "transcripts of real sessions and are no substitute for professional care.",
        "- The PII scan finds structured identifiers only; names and places in free text are not detected.",
        "- Near-duplicate removal is approximate (MinHash LSH)"
        + (f", at Jaccard threshold {spec['dedup']['near']}." if spec["dedup"]["near"] else "; it was off."),
        "",
        "## Build",
        "",
        f"Software: `{manifest['software']}`. The spec:",
        "",
        "```json",
        _json(spec),
        "```",
        "",
    ]
    return "\n".join(out)


def _json(value) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2)


def _fmt(value) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _agreement_lines(manifest: dict, spec: dict) -> list[str]:
    """The agreement of the campaigns the items were reviewed in (Krippendorff's alpha on the decision, with its
    95% bootstrap interval, and percent agreement), as the dashboards compute it."""
    agreement = manifest.get("agreement") or {}
    out = []
    if spec.get("min_agreement") is not None:
        out.append(
            f"Only items of campaigns whose agreement on the decision (Krippendorff's alpha) is at least "
            f"{spec['min_agreement']:g}."
        )
    if agreement.get("unavailable"):
        return [*out, "", f"Campaign agreement: {agreement['unavailable']}."]
    figures = agreement.get("figures") or {}
    if not figures:
        return [*out, "", "No item of this release was reviewed in a campaign, so no agreement was measured."]
    rows = []
    for pk, f in figures.items():
        d = f.get("decision") or {}
        ci = d.get("alpha_ci") or [None, None]
        alpha = _fmt(d.get("alpha")) + (f" ({d['undefined']})" if d.get("undefined") else "")
        rows.append(
            [pk, str(f["reviews"]), str(f["items"]), str(f["raters"]), alpha, f"{_fmt(ci[0])} to {_fmt(ci[1])}",
             _fmt(d.get("percent_agreement"))]
        )  # fmt: skip
    out += ["", "Agreement of the review campaigns the items come from (all their reviews, each rater's latest):", ""]
    out += _table(rows, ["campaign", "reviews", "items", "raters", "alpha (decision)", "95% interval", "agreement"])
    return out
