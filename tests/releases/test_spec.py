"""Spec refusals name the field and the value; a valid spec comes back complete."""

import pytest
from django.core.exceptions import ValidationError

from releases import services
from releases.spec import spec_read, spec_validate
from tests import factories

pytestmark = pytest.mark.django_db


def refused(spec) -> dict:
    with pytest.raises(ValidationError) as caught:
        spec_validate(spec)
    return caught.value.message_dict


def test_a_valid_spec_comes_back_complete(taxonomy):
    spec = spec_validate({"formats": ["sft", "dpo", "sft"], "sub_emotions": ["anxiety.1"]})
    assert spec == {
        "kinds": ["dialogue"], "formats": ["dpo", "sft"], "campaigns": [], "sub_emotions": ["anxiety.1"],
        "categories": [], "languages": [], "dates": {}, "min_approvals": 0, "min_mean": {}, "min_agreement": None,
        "edited_only": False,
        "model_specs": [], "prompt_versions": [], "splits": {"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 0},
        "dedup": {"exact": True, "near": None}, "dpo": {"max_similarity": 0.95},
        "pii": {"action": "block", "detectors": ["cn_id", "email", "phone", "url"]}, "parquet": True,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ("sft", "spec", "must be an object"),
        ({}, "formats", "name one or more"),
        ({"formats": ["sft"], "colour": "red"}, "colour", "unknown field"),
        ({"formats": ["parquet"]}, "formats", "'parquet'"),
        ({"formats": ["sft"], "kinds": ["poem"]}, "kinds", "'poem'"),
        ({"formats": ["sft"], "kinds": ["dialogue", "plan"]}, "kinds", "no format of this release writes 'plan'"),
        ({"formats": ["grpo"], "kinds": ["dialogue"]}, "kinds", "no format of this release writes 'dialogue'"),
        ({"formats": ["sft"], "sub_emotions": ["anxiety.1", "joy.99"]}, "sub_emotions", "'joy.99'"),
        ({"formats": ["sft"], "categories": ["boredom"]}, "categories", "'boredom'"),
        ({"formats": ["sft"], "campaigns": [987654]}, "campaigns", "987654"),
        ({"formats": ["sft"], "campaigns": [10**30]}, "campaigns", "is not an id"),
        ({"formats": ["sft"], "languages": ["fr"]}, "languages", "'fr'"),
        ({"formats": ["sft"], "model_specs": ["gpt-99"]}, "model_specs", "'gpt-99'"),
        ({"formats": ["sft"], "min_mean": {"charm": 3}}, "min_mean.charm", "unknown field"),
        ({"formats": ["sft"], "min_mean": {"empathy": 6}}, "min_mean.empathy", "from 1"),
        ({"formats": ["sft"], "min_approvals": True}, "min_approvals", "whole number"),
        ({"formats": ["sft"], "edited_only": 1}, "edited_only", "true or false"),
        ({"formats": ["sft"], "min_agreement": 1.5}, "min_agreement", "from -1 to 1"),
        ({"formats": ["sft"], "min_agreement": "0.8"}, "min_agreement", "must be a number"),
        ({"formats": ["sft"], "min_agreement": float("nan")}, "min_agreement", "must be a number"),
        ({"formats": ["sft"], "min_agreement": True}, "min_agreement", "must be a number"),
        ({"formats": ["sft"], "splits": {"train": 0.5, "test": 0.4, "seed": 1}}, "splits", "sum to 1"),
        ({"formats": ["sft"], "splits": {"train": 1, "seed": 10**30}}, "splits.seed", "whole number"),
        ({"formats": ["sft"], "splits": {"train": 1, "holdout": 0}}, "splits.holdout", "unknown field"),
        ({"formats": ["sft"], "dedup": {"fuzzy": 0.8}}, "dedup.fuzzy", "unknown field"),
        ({"formats": ["sft"], "dedup": {"near": 1.5}}, "dedup.near", "from 0.5 to 1"),
        ({"formats": ["sft"], "pii": {"action": "ignore"}}, "pii.action", "'ignore'"),
        ({"formats": ["sft"], "pii": {"detectors": ["phone", "iban"]}}, "pii.detectors", "'iban'"),
        ({"formats": ["sft"], "parquet": "yes"}, "parquet", "true or false"),
        ({"formats": ["sft"], "dates": {"from": "2026-13-01"}}, "dates.from", "YYYY-MM-DD"),
        ({"formats": ["sft"], "dates": {"from": "2026-02-01", "to": "2026-01-01"}}, "dates", "after"),
    ],
)
def test_refusals_name_the_field(taxonomy, spec, field, words):
    errors = refused(spec)
    assert field in errors, errors
    assert words in " ".join(errors[field])


def test_a_spec_that_selects_nothing_is_refused_before_anything_is_built(taxonomy, curator):
    factories.make_candidate()  # not approved
    with pytest.raises(ValidationError) as caught:
        services.release_create(name="empty", version="1", spec={"formats": ["sft"]}, user=curator)
    assert "selects nothing" in caught.value.message_dict["spec"][0]
    from releases.models import Release

    assert not Release.objects.exists()


def test_names_versions_and_roles(taxonomy, curator, counselor):
    factories.make_candidate(status="approved")
    spec = {"formats": ["sft"]}
    with pytest.raises(ValidationError, match="lower-case"):
        services.release_create(name="Bad Name", version="1", spec=spec, user=curator)
    with pytest.raises(ValidationError, match="letters, digits"):
        services.release_create(name="ok", version="1 0", spec=spec, user=curator)
    with pytest.raises(Exception, match="Only curators"):
        services.release_create(name="ok", version="1", spec=spec, user=counselor)
    services.release_create(name="ok", version="1", spec=spec, user=curator, queue=False)
    with pytest.raises(ValidationError, match="a new build is a new version"):
        services.release_create(name="ok", version="1", spec=spec, user=curator, queue=False)


def test_yaml_and_json_specs_are_read(tmp_path):
    (tmp_path / "a.yaml").write_text("formats: [sft]\nsplits: {train: 1, seed: 2}\n")
    (tmp_path / "b.json").write_text('{"formats": ["sft"]}')
    (tmp_path / "c.json").write_text('{"formats": ')
    assert spec_read(tmp_path / "a.yaml") == {"formats": ["sft"], "splits": {"train": 1, "seed": 2}}
    assert spec_read(tmp_path / "b.json") == {"formats": ["sft"]}
    with pytest.raises(ValidationError, match="cannot be read"):
        spec_read(tmp_path / "c.json")
