"""The AI against the clinicians: numbers worked out by hand on the five dialogues of ``calibration_world``."""

import pytest

from dashboards.selectors.calibration import CalibrationFilters, calibration_for

from .conftest import SUPERVISOR_KEYS

pytestmark = pytest.mark.django_db


def test_the_kept_attempt_is_the_best_mean_and_the_last_on_a_tie(calibration_world):
    from generation.models import Candidate

    def attempt(mean, score):
        return {"mean": mean, "scores": {k: {"score": score} for k in SUPERVISOR_KEYS}}

    attempts = [attempt(3.0, 1), {"failure": {}}, attempt(4.0, 2), attempt(4.0, 3), attempt(None, 5)]
    first = calibration_world["dialogues"][0]
    Candidate.objects.filter(pk=first.pk).update(ai_review={"supervisor": {"attempts": attempts}})
    empathy = next(c for c in calibration_for(filters=CalibrationFilters()).groups[0].criteria if c.key == "empathy")
    # The first dialogue's clinicians' mean is 2: its AI score is now 3 (the fourth attempt), not 1.
    assert empathy.table[2][1] == 1 and empathy.table[0][1] == 0


def test_supervisor_against_clinicians(calibration_world):
    result = calibration_for(filters=CalibrationFilters())
    overall, *per_model = result.groups
    assert overall.model == "" and len(per_model) == 1
    assert per_model[0].prompt_version == "v1"
    assert overall.scored_items == 5
    empathy = next(c for c in overall.criteria if c.key == "empathy")
    assert empathy.items == 5
    assert empathy.spearman.value == pytest.approx(0.8)
    assert empathy.bias.value == pytest.approx(-0.1)
    # Rows: the AI's score; columns: the clinicians' mean rounded half up (2, 2, 4, 3, 5).
    assert empathy.table == [
        [0, 1, 0, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 0, 0, 1],
    ]


def test_classifier_against_the_target(calibration_world):
    overall = calibration_for(filters=CalibrationFilters()).groups[0]
    # Four classified (one unreadable), one never classified; right: anxiety.1; same category: anxiety.1, anxiety.2.
    assert overall.classified == 4
    assert overall.accuracy.value == pytest.approx(0.25)
    assert overall.category_accuracy.value == pytest.approx(0.5)
    assert overall.accuracy_ci.low.value < 0.25 < overall.accuracy_ci.high.value
    matrix = dict(zip([key for key, _ in overall.confusion.rows], overall.confusion.counts, strict=True))
    columns = [key for key, _ in overall.confusion.columns]
    assert len(overall.confusion.rows) == 8 and columns[-1] == "none"
    anxiety = dict(zip(columns, matrix["anxiety"], strict=True))
    assert anxiety == {**dict.fromkeys(columns, 0), "anxiety": 2, "fear": 1, "none": 1}
    assert sum(map(sum, overall.confusion.counts)) == 4


def test_confusion_drill_down_to_sub_emotions(calibration_world):
    overall = calibration_for(filters=CalibrationFilters(category="anxiety")).groups[0]
    rows = [key for key, _ in overall.confusion.rows]
    columns = [key for key, _ in overall.confusion.columns]
    assert rows == ["anxiety.0", "anxiety.1", "anxiety.2", "anxiety.3"]
    assert columns == [*rows, "other", "none"]
    assert overall.confusion.counts[1] == [0, 1, 1, 0, 1, 1]


def test_filters_narrow_the_items(calibration_world):
    assert calibration_for(filters=CalibrationFilters(prompt_version="v2")).groups[0].scored_items == 0
    empty = calibration_for(filters=CalibrationFilters(model="no-such-model")).groups
    assert len(empty) == 1
    assert empty[0].criteria[0].spearman.value is None
    assert empty[0].accuracy.value is None
    scoped = calibration_for(filters=CalibrationFilters(campaign=calibration_world["campaign"])).groups[0]
    assert scoped.scored_items == 5


def test_the_supervisor_scores_the_dialogue_rubric_criteria():
    from annotations.rubrics import DIALOGUE_RUBRIC
    from generation.agents.psyroom import SUPERVISOR_DIMENSIONS

    assert [c["key"] for c in DIALOGUE_RUBRIC["criteria"]] == list(SUPERVISOR_DIMENSIONS)
