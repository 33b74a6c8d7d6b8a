"""The API's world, shared by the hostile-input, fuzz and idempotency tests (a plugin of tests/conftest.py): each
role's user, a campaign with a claimed item, a candidate in no campaign, a run, a profile and a MusPsy course, and a
valid body for every write operation made from them."""

import json
from pathlib import Path

import pytest

from annotations.rubrics import DIALOGUE_RUBRIC
from annotations.services import campaigns, queue
from generation.importers.courses import course_import_muspsy
from generation.models import Candidate, CandidateKind, ClientProfile, GenerationRun, SubEmotion
from generation.schemas import MEMORY_FIELDS
from generation.services.modelspecs import modelspec_get_default
from psyroom_admin import roles
from releases.models import Release
from tests import factories

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "muspsy"
ROLES = [roles.COUNSELOR, roles.SENIOR_CLINICIAN, roles.CURATOR, roles.ADMIN]


@pytest.fixture
def people(taxonomy, curator, senior):
    """Each role's user, a candidate in an open campaign (claimed by the counselor), one in none, a run, a profile."""
    counselor = factories.make_user(roles.COUNSELOR)
    admin = factories.make_user(roles.ADMIN, is_staff=True)
    candidate = factories.make_candidate()
    loose = factories.make_candidate()  # in no campaign: reviewed and edited outside the queue
    question = factories.make_candidate(sub_emotion_key=None)
    campaign = campaigns.campaign_create(
        creator=curator, name="Hostile", kind="dialogue", overlap=2, members=[counselor, senior],
        candidate_ids=[candidate.pk, question.pk],
    )  # fmt: skip
    assignment = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    run = GenerationRun.objects.create(
        kind="dialogue",
        count=4,
        model_spec=modelspec_get_default(),
        prompt_version="v1",
        sub_emotion=SubEmotion.objects.get(key="anxiety.1"),
        targets=[{"sub_emotion": "anxiety.1", "scenario": None}],
    )
    profile = ClientProfile.objects.create(name="Li")
    users = {
        roles.COUNSELOR: counselor,
        roles.SENIOR_CLINICIAN: senior,
        roles.CURATOR: curator,
        roles.ADMIN: admin,
    }
    return {
        "users": users,
        "candidate": candidate,
        "loose": loose,
        "campaign": campaign,
        "assignment": assignment,
        "run": run,
        "profile": profile,
    }


@pytest.fixture
def world(people, curator):
    """``people`` and an imported MusPsy course with its sessions, in a campaign of the counselor."""
    course = course_import_muspsy(
        dialogues=FIXTURES / "dialogues_1000.txt",
        memories=FIXTURES / "memories_1000.txt",
        cards=FIXTURES / "usercards_1000.txt",
    ).course
    campaigns.campaign_create(
        creator=curator, name="Courses", kind="course", overlap=2, members=[people["users"][roles.COUNSELOR]],
        candidate_ids=[course.pk],
    )  # fmt: skip
    session = Candidate.objects.filter(kind=CandidateKind.SESSION, parent=course).order_by("sequence").first()
    # An approved dialogue for a release to select, and a release (queued: nothing is built in these tests).
    approved = factories.make_candidate(content=factories.dialogue_content(prefix="Approved. "), status="approved")
    release = Release.objects.create(name="world", version="1", spec={"formats": ["sft"]}, created_by=curator)
    return {**people, "course": course, "session": session, "release": release, "approved": approved}


def path_ids(world) -> dict[str, int]:
    """The object each path's ``{id}`` names: one that exists, so that the body is read."""
    return {
        "/api/adjudications/": world["assignment"].item_id,
        "/api/assignments/": world["assignment"].pk,
        "/api/campaigns/": world["campaign"].pk,
        "/api/candidates/": world["candidate"].pk,
        "/api/courses/": world["course"].pk,
        "/api/dashboards/campaigns/": world["campaign"].pk,
        "/api/questions/": world["candidate"].pk,
        "/api/releases/": world["release"].pk if "release" in world else 1,
        "/api/runs/": world["run"].pk,
        "/api/sessions/": world["session"].pk,
    }


def _scores(value=4) -> dict:
    return {c["key"]: value for c in DIALOGUE_RUBRIC["criteria"]}


def base_bodies(world) -> dict[str, dict]:
    """A valid body for each operation that takes one: each hostile case changes one thing in it."""
    for row in ("candidate", "loose", "session"):
        if row in world:
            world[row].refresh_from_db()
    candidate, loose, session = world["candidate"], world["loose"], world.get("session")
    return {
        "adjudications_decide": {"decision": "approve", "reason": "Fine.", "version": candidate.version, "flags": []},
        "assignments_review": {
            "scores": _scores(),
            "decision": "approve",
            "comment": "Warm.",
            "risk_flags": [],
            "version": candidate.version,
            "time_spent_s": 30,
            "idempotency_key": "hostile-1",
        },
        "auth_token_create": {"username": "nobody", "password": "wrong"},
        "campaigns_gold_mark": {
            "candidate": world["approved"].pk if "approved" in world else candidate.pk,
            "scores": _scores(5),
            "decision": "approve",
        },
        "campaigns_create": {
            "name": "Spring",
            "kind": "dialogue",
            "overlap": 2,
            "members": [world["users"][roles.COUNSELOR].pk],
            "guidelines": "Be kind.",
            "blind": True,
            "policy": {"min_approvals": 1, "min_mean": 3.0, "no_risk": True},
            "lease_seconds": 1800,
            "filters": {"sub_emotions": ["anxiety.1"], "scenarios": [], "run": world["run"].pk, "status": "generated"},
        },
        "drafts_save": {"scores": _scores(3), "decision": "approve", "comment": "So far", "risk_flags": []},
        "candidates_sign_off": {"note": "Handled.", "version": candidate.version, "flags": [1]},
        "candidates_turn_edit": {"text": "Better.", "version": loose.version, "category": "wording", "reason": "r"},
        "profiles_create": {
            "name": "Ana",
            "background": "A nurse.",
            "personality": "Calm.",
            "assessment": "Low mood.",
            "goals": "Sleep.",
            "language": "en",
        },
        "releases_create": {
            "name": "hostile",
            "version": "1.0",
            "spec": {
                "formats": ["sft", "dpo"],
                "sub_emotions": ["anxiety.1"],
                "min_approvals": 0,
                "min_mean": {"empathy": 1.0},
                "edited_only": False,
                "splits": {"train": 1, "validation": 0, "test": 0, "seed": 7},
                "dedup": {"exact": True},
            },
        },
        "review_policy_update": {"min_senior_approvals": 1, "min_counselor_approvals": 2, "min_mean": 3.5},
        "reviews_create": {
            "candidate": loose.pk,
            "version": loose.version,
            "scores": _scores(),
            "decision": "approve",
            "comment": "Good.",
            "risk_flags": [],
            "started_at": "",
        },
        "runs_create": {
            "kind": "dialogue",
            "sub_emotions": ["anxiety.1"],
            "scenarios": [],
            "count": 1,
            "turns": 2,
            "sessions": 3,
            "model_spec": "",
            "seed": 7,
            "parameters": {"temperature": 0.7, "max_new_tokens": 64},
        },
        "sessions_memory_edit": {
            "memory": dict.fromkeys(MEMORY_FIELDS, "noted"),
            "version": session.version if session else 1,
            "category": "clinical",
            "reason": "r",
        },
    }


# --- Hostile bodies: a valid body with one value at a time made hostile, and bodies that are no object ---

NUL = "a\x00b"
SURROGATE = "\ud800"
HUGE = 10**30
# Values put in place of one leaf of a valid body. A string field is not sent a number (a number is a fine string).
FOR_STRING = (NUL, SURROGATE)
FOR_OTHER = (NUL, SURROGATE, HUGE, -HUGE, 935411043430640910336)


def deep(depth: int):
    """``"x"`` inside ``depth`` nested lists."""
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


WHOLE_BODIES = {
    "a number": b"1",
    "a list": b"[]",
    "a string": b'"draft"',
    "null": b"null",
    "a list of objects": b'[{"a": 1}]',
    "nested 64 deep": json.dumps({"a": deep(64)}).encode(),
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
    "not JSON": b'{"a": ',
    "NaN": b'{"a": NaN}',
    "a NUL key": json.dumps({"\x00": 1}).encode(),
    "a surrogate key": json.dumps({"\ud800": 1}).encode(),
    "invalid UTF-8": b'{"a": "\xff\xfe"}',
}


def leaves(value, path=()):
    """(path, value) of every leaf of a JSON value; an empty list or object is a leaf."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from leaves(item, (*path, i))
    else:
        yield path, value


def replace_leaf(value, path, new):
    """A copy of the JSON ``value`` with the leaf at ``path`` made ``new``."""
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replace_leaf(value[path[0]], path[1:], new)
    return copy


def body_cases(base: dict, properties) -> list[tuple[str, bytes]]:
    """(what, raw body) for one operation: one hostile value at a time, then the whole-body cases."""
    cases = []
    for path, leaf in leaves(base):
        where = ".".join(map(str, path))
        for bad in FOR_STRING if isinstance(leaf, str) else FOR_OTHER:
            cases.append((f"{where}={bad!r}", replace_leaf(base, path, bad)))
        cases.append((f"{where}=[[...]] 40 deep", replace_leaf(base, path, deep(40))))
    for name in properties:
        if name not in base:
            for bad in FOR_OTHER:
                cases.append((f"{name}={bad!r}", {**base, name: bad}))
    cases.append(("a NUL key", {**base, "\x00": 1}))
    encoded = [(what, json.dumps(body).encode()) for what, body in cases]
    return encoded + list(WHOLE_BODIES.items())
