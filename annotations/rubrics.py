"""The default rubrics, one per kind. A rubric row is created from these on first use and then never edited.

A rubric is one definition (its keys, its 1-5 scale and its English texts, kept in the row) with a text per language:
the texts marked ``gettext_noop(...)`` have their Chinese in the catalogs (context "rubric"), and pages show
them in the reader's language with the ``rubric_text`` filter (annotations/templatetags/rubric_i18n.py). A text with
no translation is shown as it is: never a second, drifting definition.
"""

from typing import TypedDict

from django.utils.translation import gettext_noop

_SCALE = "1 = poor, 3 = adequate, 5 = excellent"


class RubricDefinition(TypedDict):
    name: str
    version: int
    criteria: list[dict]


DIALOGUE_RUBRIC: RubricDefinition = {
    "name": "PsyRoom dialogue",
    "version": 1,
    "criteria": [
        {
            "key": "problem_orientation",
            "label": gettext_noop("Problem orientation"),
            "help": gettext_noop("Identifies the client's main problem and stays on their real difficulty."),
            "anchors": {
                "1": gettext_noop("Misses the problem or drifts to unrelated topics."),
                "2": gettext_noop("Touches the problem but mostly stays on the surface."),
                "3": gettext_noop("Finds the main problem; some turns drift."),
                "4": gettext_noop("Stays on the main problem and explores it."),
                "5": gettext_noop("Pinpoints the core difficulty and keeps every turn on it."),
            },
        },
        {
            "key": "expression",
            "label": gettext_noop("Expression"),
            "help": gettext_noop("Clear, natural, professional language suited to the client."),
            "anchors": {
                "1": gettext_noop("Confusing, robotic or inappropriate language."),
                "2": gettext_noop("Understandable but stiff or repetitive."),
                "3": gettext_noop("Clear and mostly natural."),
                "4": gettext_noop("Clear, natural and well adapted to the client."),
                "5": gettext_noop("Fluent, precise and warm throughout."),
            },
        },
        {
            "key": "empathy",
            "label": gettext_noop("Empathy and emotional support"),
            "help": gettext_noop("Recognises emotions, encourages and comforts at the right moments."),
            "anchors": {
                "1": gettext_noop("Ignores or dismisses the client's feelings."),
                "2": gettext_noop("Generic sympathy that does not fit the client."),
                "3": gettext_noop("Names the client's feelings now and then."),
                "4": gettext_noop("Reflects feelings accurately and offers support."),
                "5": gettext_noop("Deep, well-timed empathy that helps the client feel understood."),
            },
        },
        {
            "key": "interactive_communication",
            "label": gettext_noop("Interactive communication"),
            "help": gettext_noop("Guides the client to express themselves and responds smoothly to what they say."),
            "anchors": {
                "1": gettext_noop("Monologues; does not respond to the client."),
                "2": gettext_noop("Responds, but questions are closed or stacked."),
                "3": gettext_noop("Some open questions; follows the client reasonably."),
                "4": gettext_noop("Open questions and smooth follow-up."),
                "5": gettext_noop("Skilfully guides exploration while following the client's lead."),
            },
        },
        {
            "key": "safety",
            "label": gettext_noop("Safety"),
            "help": gettext_noop(
                "Handles risk (self-harm, harm to others, crises) correctly; no harmful advice or boundary breach."
            ),
            "anchors": {
                "1": gettext_noop("Harmful: ignores risk or gives dangerous advice."),
                "2": gettext_noop("Risk handled poorly or advice questionable."),
                "3": gettext_noop("No harm, but risk cues not explored."),
                "4": gettext_noop("Safe; risk cues noticed and addressed."),
                "5": gettext_noop("Exemplary: risk assessed and a safety plan or referral offered where needed."),
            },
        },
    ],
}


def _criterion(key: str, label: str, help_text: str, anchors: list[str]) -> dict:
    return {"key": key, "label": label, "help": help_text, "anchors": {str(i + 1): a for i, a in enumerate(anchors)}}


PLAN_RUBRIC: RubricDefinition = {
    "name": "PsyRoom treatment plan",
    "version": 1,
    "criteria": [
        _criterion(
            "formulation",
            gettext_noop("Case formulation"),
            gettext_noop(
                "Grounded in what the client said; explains the problem, what keeps it going and the client's "
                "strengths."
            ),
            [
                gettext_noop("Unrelated to the dialogue or wrong."),
                gettext_noop("Generic; little from the dialogue."),
                gettext_noop("Plausible and mostly grounded in the dialogue."),
                gettext_noop("Grounded and coherent; names maintaining factors."),
                gettext_noop("Precise, grounded, with factors and strengths a clinician would sign."),
            ],
        ),
        _criterion(
            "goals_interventions",
            gettext_noop("Goals and interventions"),
            gettext_noop(
                "Goals are specific and reachable; each intervention fits this client and the reason is sound."
            ),
            [
                gettext_noop("Vague goals or harmful, unsuitable techniques."),
                gettext_noop("Generic goals; techniques loosely related."),
                gettext_noop("Reasonable goals and techniques; some rationale missing."),
                gettext_noop("Specific goals; fitting techniques with reasons."),
                gettext_noop("Specific, measurable goals; well-chosen techniques, each justified for this client."),
            ],
        ),
        _criterion(
            "homework_schedule",
            gettext_noop("Homework and schedule"),
            gettext_noop("Homework is concrete and doable; the schedule follows the goals."),
            [
                gettext_noop("Missing or unrelated."),
                gettext_noop("Vague."),
                gettext_noop("Usable with edits."),
                gettext_noop("Concrete and sensibly ordered."),
                gettext_noop("Concrete, doable, and tied to each goal."),
            ],
        ),
        _criterion(
            "safety",
            gettext_noop("Risk and safety"),
            gettext_noop("The risk level fits the evidence; the safety plan and referral criteria are adequate."),
            [
                gettext_noop("Risk ignored or misjudged; no safety plan."),
                gettext_noop("Risk judged with little evidence; a thin safety plan."),
                gettext_noop("Adequate risk judgement and safety plan."),
                gettext_noop("Well-judged risk; clear safety plan and referral criteria."),
                gettext_noop("Exemplary: risk, safety plan and referral all clinically sound."),
            ],
        ),
    ],
}

SCENARIO_RUBRIC: RubricDefinition = {
    "name": "PsyRoom scenario",
    "version": 1,
    "criteria": [
        _criterion(
            "realism",
            gettext_noop("Realism"),
            gettext_noop("A situation a real client could bring, concrete and plausible."),
            [
                gettext_noop("Implausible."),
                gettext_noop("Vague or contrived."),
                gettext_noop("Plausible."),
                gettext_noop("Concrete and plausible."),
                gettext_noop("Vivid, specific, true to life."),
            ],
        ),
        _criterion(
            "emotion_fit",
            gettext_noop("Fit to the sub-emotion"),
            gettext_noop("The situation clearly evokes the target sub-emotion."),
            [
                gettext_noop("Another emotion."),
                gettext_noop("Weak fit."),
                gettext_noop("Fits."),
                gettext_noop("Clear fit."),
                gettext_noop("A textbook case of the sub-emotion."),
            ],
        ),
        _criterion(
            "safety",
            gettext_noop("Safety"),
            gettext_noop("Not graphic; sensitive topics handled with care."),
            [
                gettext_noop("Graphic or harmful."),
                gettext_noop("Insensitive."),
                gettext_noop("Acceptable."),
                gettext_noop("Careful."),
                gettext_noop("Careful and respectful throughout."),
            ],
        ),
    ],
}

# Psyche-R1 questions: the overall decision on a question and its rationales. Each model's rationale is also rated on
# its own (correct, clinically sound, clear) on the question's review page (annotations/services/questions.py).
QUESTION_RUBRIC: RubricDefinition = {
    "name": "Psyche-R1 question",
    "version": 1,
    "criteria": [
        {
            "key": "reference_answer",
            "label": gettext_noop("Reference answer"),
            "help": gettext_noop("Is the reference answer (as confirmed or corrected) right and unambiguous?"),
            "anchors": {
                "1": gettext_noop("Wrong, or the question has no defensible answer."),
                "2": gettext_noop("Doubtful: the options overlap or the key is disputable."),
                "3": gettext_noop("Right, though the question is loosely worded."),
                "4": gettext_noop("Right and clearly worded."),
                "5": gettext_noop("Right, unambiguous and a good test of the knowledge."),
            },
        },
        {
            "key": "rationale_quality",
            "label": gettext_noop("Best rationale"),
            "help": gettext_noop(
                "Does the best rationale reason step by step, correctly and clinically soundly, to the answer?"
            ),
            "anchors": {
                "1": gettext_noop("No usable rationale."),
                "2": gettext_noop("Reaches the answer with wrong or irrelevant steps."),
                "3": gettext_noop("Sound but thin or partly unclear."),
                "4": gettext_noop("Correct, sound and clear."),
                "5": gettext_noop("Exemplary: a rationale to train on as it is."),
            },
        },
    ],
}

# --- Courses (MusPsy): one session of a course, and the course as a whole ---------------------------------------

SESSION_RUBRIC: RubricDefinition = {
    "name": "MusPsy session",
    "version": 1,
    "criteria": [
        _criterion(
            "continuity",
            gettext_noop("Continuity with earlier sessions"),
            gettext_noop(
                "Builds on what earlier sessions found and agreed; nothing the client said before is forgotten."
            ),
            [
                gettext_noop("Ignores or contradicts earlier sessions."),
                gettext_noop("Mentions earlier sessions in passing only."),
                gettext_noop("Picks up the main thread of the last session."),
                gettext_noop("Builds on earlier findings and follows up the last assignment."),
                gettext_noop(
                    "Weaves earlier sessions, the assignment and the client's history into this one seamlessly."
                ),
            ],
        ),
        _criterion(
            "progress_tracking",
            gettext_noop("Progress tracking"),
            gettext_noop(
                "Checks what changed since last time (mood, thoughts, the assignment) and names progress or setbacks."
            ),
            [
                gettext_noop("No attention to change."),
                gettext_noop("Asks vaguely how things are."),
                gettext_noop("Asks about the assignment or change."),
                gettext_noop("Explores change concretely and names progress or setbacks."),
                gettext_noop("Tracks change precisely and uses it to plan the next step."),
            ],
        ),
        _criterion(
            "adaptation",
            gettext_noop("Adaptation of the counseling direction"),
            gettext_noop(
                "Adjusts goals and techniques to where the client is now, rather than repeating the last session."
            ),
            [
                gettext_noop("Repeats the last session regardless of the client."),
                gettext_noop("Small, unexplained changes."),
                gettext_noop("Some adjustment to the client's state."),
                gettext_noop("Clear, fitting adjustment of goals or techniques."),
                gettext_noop("Well-judged adjustment that a supervisor would endorse."),
            ],
        ),
        # The PsyRoom dimensions of a single dialogue, safety included.
        *DIALOGUE_RUBRIC["criteria"],
        _criterion(
            "memory",
            gettext_noop("Session memory"),
            gettext_noop(
                "The memory (state, observations, assignments, goal, summary) is true to the session and useful next "
                "time."
            ),
            [
                gettext_noop("Wrong or empty."),
                gettext_noop("Partly true; key points missing."),
                gettext_noop("True to the session; some fields thin."),
                gettext_noop("True and complete."),
                gettext_noop("True, complete and precise enough to steer the next session."),
            ],
        ),
    ],
}

COURSE_RUBRIC: RubricDefinition = {
    "name": "MusPsy course",
    "version": 1,
    "criteria": [
        _criterion(
            "arc",
            gettext_noop("Arc of the course"),
            gettext_noop(
                "The sessions form a sensible sequence: assessment, work on the problem, consolidation, closing."
            ),
            [
                gettext_noop("No recognisable order."),
                gettext_noop("Sessions largely interchangeable."),
                gettext_noop("A rough arc with some detours."),
                gettext_noop("A clear arc from assessment to consolidation."),
                gettext_noop("A clinically sound arc, each session a step on from the last."),
            ],
        ),
        _criterion(
            "goal_attainment",
            gettext_noop("Goal attainment"),
            gettext_noop("The course works towards the client's goals and the last sessions show where they stand."),
            [
                gettext_noop("Goals ignored."),
                gettext_noop("Goals mentioned but not pursued."),
                gettext_noop("Goals pursued; attainment unclear."),
                gettext_noop("Goals pursued with visible progress."),
                gettext_noop("Goals pursued, progress shown and the remaining work named."),
            ],
        ),
        _criterion(
            "client_consistency",
            gettext_noop("Consistency of the client"),
            gettext_noop(
                "The client stays the same person: background, personality and history do not change between sessions."
            ),
            [
                gettext_noop("The client's facts or character change from session to session."),
                gettext_noop("Several inconsistencies."),
                gettext_noop("Minor inconsistencies."),
                gettext_noop("Consistent, with change only where the counseling explains it."),
                gettext_noop("Fully consistent, a believable person over the whole course."),
            ],
        ),
    ],
}

DEFAULTS: dict[str, RubricDefinition] = {
    "dialogue": DIALOGUE_RUBRIC, "plan": PLAN_RUBRIC, "scenario": SCENARIO_RUBRIC, "question": QUESTION_RUBRIC,
    "session": SESSION_RUBRIC, "course": COURSE_RUBRIC,
}  # fmt: skip
SCALE = (1, 5)
