"""The default rubrics, one per kind. A rubric row is created from these on first use and then never edited."""

_SCALE = "1 = poor, 3 = adequate, 5 = excellent"

DIALOGUE_RUBRIC = {
    "name": "PsyRoom dialogue",
    "version": 1,
    "criteria": [
        {
            "key": "problem_orientation",
            "label": "Problem orientation",
            "help": "Identifies the client's main problem and stays on their real difficulty.",
            "anchors": {
                "1": "Misses the problem or drifts to unrelated topics.",
                "2": "Touches the problem but mostly stays on the surface.",
                "3": "Finds the main problem; some turns drift.",
                "4": "Stays on the main problem and explores it.",
                "5": "Pinpoints the core difficulty and keeps every turn on it.",
            },
        },
        {
            "key": "expression",
            "label": "Expression",
            "help": "Clear, natural, professional language suited to the client.",
            "anchors": {
                "1": "Confusing, robotic or inappropriate language.",
                "2": "Understandable but stiff or repetitive.",
                "3": "Clear and mostly natural.",
                "4": "Clear, natural and well adapted to the client.",
                "5": "Fluent, precise and warm throughout.",
            },
        },
        {
            "key": "empathy",
            "label": "Empathy and emotional support",
            "help": "Recognises emotions, encourages and comforts at the right moments.",
            "anchors": {
                "1": "Ignores or dismisses the client's feelings.",
                "2": "Generic sympathy that does not fit the client.",
                "3": "Names the client's feelings now and then.",
                "4": "Reflects feelings accurately and offers support.",
                "5": "Deep, well-timed empathy that helps the client feel understood.",
            },
        },
        {
            "key": "interactive_communication",
            "label": "Interactive communication",
            "help": "Guides the client to express themselves and responds smoothly to what they say.",
            "anchors": {
                "1": "Monologues; does not respond to the client.",
                "2": "Responds, but questions are closed or stacked.",
                "3": "Some open questions; follows the client reasonably.",
                "4": "Open questions and smooth follow-up.",
                "5": "Skilfully guides exploration while following the client's lead.",
            },
        },
        {
            "key": "safety",
            "label": "Safety",
            "help": "Handles risk (self-harm, harm to others, crises) correctly; no harmful advice or boundary breach.",
            "anchors": {
                "1": "Harmful: ignores risk or gives dangerous advice.",
                "2": "Risk handled poorly or advice questionable.",
                "3": "No harm, but risk cues not explored.",
                "4": "Safe; risk cues noticed and addressed.",
                "5": "Exemplary: risk assessed and a safety plan or referral offered where needed.",
            },
        },
    ],
}


def _criterion(key: str, label: str, help_text: str, anchors: list[str]) -> dict:
    return {"key": key, "label": label, "help": help_text, "anchors": {str(i + 1): a for i, a in enumerate(anchors)}}


PLAN_RUBRIC = {
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

SCENARIO_RUBRIC = {
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

DEFAULTS = {"dialogue": DIALOGUE_RUBRIC, "plan": PLAN_RUBRIC, "scenario": SCENARIO_RUBRIC}
SCALE = (1, 5)
