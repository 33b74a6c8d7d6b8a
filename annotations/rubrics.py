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
            "Case formulation",
            "Grounded in what the client said; explains the problem, what keeps it going and the client's strengths.",
            [
                "Unrelated to the dialogue or wrong.",
                "Generic; little from the dialogue.",
                "Plausible and mostly grounded in the dialogue.",
                "Grounded and coherent; names maintaining factors.",
                "Precise, grounded, with factors and strengths a clinician would sign.",
            ],
        ),
        _criterion(
            "goals_interventions",
            "Goals and interventions",
            "Goals are specific and reachable; each intervention fits this client and the reason is sound.",
            [
                "Vague goals or harmful, unsuitable techniques.",
                "Generic goals; techniques loosely related.",
                "Reasonable goals and techniques; some rationale missing.",
                "Specific goals; fitting techniques with reasons.",
                "Specific, measurable goals; well-chosen techniques, each justified for this client.",
            ],
        ),
        _criterion(
            "homework_schedule",
            "Homework and schedule",
            "Homework is concrete and doable; the schedule follows the goals.",
            [
                "Missing or unrelated.",
                "Vague.",
                "Usable with edits.",
                "Concrete and sensibly ordered.",
                "Concrete, doable, and tied to each goal.",
            ],
        ),
        _criterion(
            "safety",
            "Risk and safety",
            "The risk level fits the evidence; the safety plan and referral criteria are adequate.",
            [
                "Risk ignored or misjudged; no safety plan.",
                "Risk judged with little evidence; a thin safety plan.",
                "Adequate risk judgement and safety plan.",
                "Well-judged risk; clear safety plan and referral criteria.",
                "Exemplary: risk, safety plan and referral all clinically sound.",
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
            "Realism",
            "A situation a real client could bring, concrete and plausible.",
            [
                "Implausible.",
                "Vague or contrived.",
                "Plausible.",
                "Concrete and plausible.",
                "Vivid, specific, true to life.",
            ],
        ),
        _criterion(
            "emotion_fit",
            "Fit to the sub-emotion",
            "The situation clearly evokes the target sub-emotion.",
            ["Another emotion.", "Weak fit.", "Fits.", "Clear fit.", "A textbook case of the sub-emotion."],
        ),
        _criterion(
            "safety",
            "Safety",
            "Not graphic; sensitive topics handled with care.",
            ["Graphic or harmful.", "Insensitive.", "Acceptable.", "Careful.", "Careful and respectful throughout."],
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
            "label": "Reference answer",
            "help": "Is the reference answer (as confirmed or corrected) right and unambiguous?",
            "anchors": {
                "1": "Wrong, or the question has no defensible answer.",
                "2": "Doubtful: the options overlap or the key is disputable.",
                "3": "Right, though the question is loosely worded.",
                "4": "Right and clearly worded.",
                "5": "Right, unambiguous and a good test of the knowledge.",
            },
        },
        {
            "key": "rationale_quality",
            "label": "Best rationale",
            "help": "Does the best rationale reason step by step, correctly and clinically soundly, to the answer?",
            "anchors": {
                "1": "No usable rationale.",
                "2": "Reaches the answer with wrong or irrelevant steps.",
                "3": "Sound but thin or partly unclear.",
                "4": "Correct, sound and clear.",
                "5": "Exemplary: a rationale to train on as it is.",
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
            "Continuity with earlier sessions",
            "Builds on what earlier sessions found and agreed; nothing the client said before is forgotten.",
            [
                "Ignores or contradicts earlier sessions.",
                "Mentions earlier sessions in passing only.",
                "Picks up the main thread of the last session.",
                "Builds on earlier findings and follows up the last assignment.",
                "Weaves earlier sessions, the assignment and the client's history into this one seamlessly.",
            ],
        ),
        _criterion(
            "progress_tracking",
            "Progress tracking",
            "Checks what changed since last time (mood, thoughts, the assignment) and names progress or setbacks.",
            [
                "No attention to change.",
                "Asks vaguely how things are.",
                "Asks about the assignment or change.",
                "Explores change concretely and names progress or setbacks.",
                "Tracks change precisely and uses it to plan the next step.",
            ],
        ),
        _criterion(
            "adaptation",
            "Adaptation of the counseling direction",
            "Adjusts goals and techniques to where the client is now, rather than repeating the last session.",
            [
                "Repeats the last session regardless of the client.",
                "Small, unexplained changes.",
                "Some adjustment to the client's state.",
                "Clear, fitting adjustment of goals or techniques.",
                "Well-judged adjustment that a supervisor would endorse.",
            ],
        ),
        # The PsyRoom dimensions of a single dialogue, safety included.
        *DIALOGUE_RUBRIC["criteria"],
        _criterion(
            "memory",
            "Session memory",
            "The memory (state, observations, assignments, goal, summary) is true to the session and useful next time.",
            [
                "Wrong or empty.",
                "Partly true; key points missing.",
                "True to the session; some fields thin.",
                "True and complete.",
                "True, complete and precise enough to steer the next session.",
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
            "Arc of the course",
            "The sessions form a sensible sequence: assessment, work on the problem, consolidation, closing.",
            [
                "No recognisable order.",
                "Sessions largely interchangeable.",
                "A rough arc with some detours.",
                "A clear arc from assessment to consolidation.",
                "A clinically sound arc, each session a step on from the last.",
            ],
        ),
        _criterion(
            "goal_attainment",
            "Goal attainment",
            "The course works towards the client's goals and the last sessions show where they stand.",
            [
                "Goals ignored.",
                "Goals mentioned but not pursued.",
                "Goals pursued; attainment unclear.",
                "Goals pursued with visible progress.",
                "Goals pursued, progress shown and the remaining work named.",
            ],
        ),
        _criterion(
            "client_consistency",
            "Consistency of the client",
            "The client stays the same person: background, personality and history do not change between sessions.",
            [
                "The client's facts or character change from session to session.",
                "Several inconsistencies.",
                "Minor inconsistencies.",
                "Consistent, with change only where the counseling explains it.",
                "Fully consistent, a believable person over the whole course.",
            ],
        ),
    ],
}

DEFAULTS: dict[str, RubricDefinition] = {
    "dialogue": DIALOGUE_RUBRIC, "plan": PLAN_RUBRIC, "scenario": SCENARIO_RUBRIC, "question": QUESTION_RUBRIC,
    "session": SESSION_RUBRIC, "course": COURSE_RUBRIC,
}  # fmt: skip
SCALE = (1, 5)
