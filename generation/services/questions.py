"""Services on question candidates (Psyche-R1) that the annotations app calls."""

import copy

from ..agents.question import answer_is_correct
from ..pipelines.question import difficulty_of


def question_rescore(*, content: dict) -> dict:
    """The content again with every answer checked against its (possibly corrected) reference answer, and the
    difficulty set again from the run's ``min_correct``. Used when a counselor corrects the reference answer."""
    new = copy.deepcopy(content)
    for answer in new.get("answers", []):
        answer["correct"] = answer_is_correct(
            given=answer.get("answer"), reference=new["answer"], question_type=new["question_type"]
        )
    selection = new.get("selection")
    if selection and new.get("answers"):
        selection["correct"] = sum(1 for a in new["answers"] if a["correct"])
        new["difficulty"] = difficulty_of(answers=new["answers"], min_correct=selection["min_correct"])
    return new
