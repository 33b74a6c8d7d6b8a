"""A scripted backend for unit tests of agent logic: it answers from a function and records every call."""

from generation.backends.base import Completion, SamplingParams


class ScriptedBackend:
    name = "scripted"

    def __init__(self, reply=None):
        # reply(prompt, call_number) -> text, or (text, truncated)
        self.reply = reply or default_reply
        self.calls: list[list] = []

    def generate(self, prompts, params: SamplingParams):
        self.calls.append(prompts)
        out = []
        for prompt in prompts:
            answer = self.reply(prompt, len(self.calls))
            text, truncated = answer if isinstance(answer, tuple) else (answer, False)
            out.append(Completion(text=text, prompt_tokens=10, completion_tokens=5, truncated=truncated))
        return out


def speaker(prompt) -> str:
    """Which agent a prompt is for, read from its text."""
    text = "\n".join(m["content"] for m in prompt)
    if "role-playing a person" in prompt[0]["content"]:
        return "client"
    if "You screen counseling sessions for suicide and self-harm risk" in text:
        return "risk"
    if "Rate the COUNSELOR" in text:
        return "supervisor_score"
    if "concrete feedback" in text:
        return "supervisor_feedback"
    if "You classify the emotion" in text:
        return "classifier"
    if "support strategies" in text:
        return "strategy"
    if "treatment plan" in prompt[0]["content"]:
        return "planner"
    if "You write scenarios" in text:
        return "scenario_writer"
    return "counselor"


PLAN_ANSWERS = {
    "case formulation": "The client puts heavy pressure on herself before exams. Perfectionism keeps it going. "
    "She is motivated and reflective.",
    "counseling goals": "- Reduce exam anxiety\n- Challenge perfectionist beliefs\n- Build a study routine",
    "interventions": "- Cognitive restructuring: her beliefs about failure drive the pressure\n"
    "- Relaxation training: she reports tension before exams",
    "homework": "- Keep a thought record\n- Practise breathing for ten minutes a day",
    "schedule": "- Session 1: assessment\n- Session 2: thoughts\n- Session 3: coping\n- Session 4: review",
    "risk of harming": "low - she reports no thoughts of harming herself or others.",
    "safety plan": "- Notice warning signs\n- Call a friend\n- Contact a crisis line",
    "referring": "- Panic attacks that do not ease\n- Signs of depression",
}


def question_of(prompt) -> str:
    """The last user message of a prompt (a prompt may end with the start of the answer)."""
    return next(m["content"] for m in reversed(prompt) if m["role"] == "user")


def plan_answer(prompt) -> str:
    """The section's answer; where the prompt starts the answer ("Risk level:"), its continuation."""
    question = question_of(prompt).lower()
    answer = next(answer for key, answer in PLAN_ANSWERS.items() if key in question)
    return " " + answer if prompt[-1]["role"] == "assistant" else answer


def default_reply(prompt, call):
    agent = speaker(prompt)
    if agent == "client":
        return "I keep worrying that I will fail my exams."
    if agent == "supervisor_score":
        # The score is asked first (a choice); then its reason, the score given as the start of the answer.
        if prompt[-1]["role"] == "assistant":
            return "The counselor stays with the client's worry."
        return "4 - The counselor stays with the client's worry."
    if agent == "supervisor_feedback":
        return "Ask about concrete situations. Reflect feelings before giving advice."
    if agent == "classifier":
        return "anxiety.1 - The client pressures herself to succeed."
    if agent == "strategy":
        return "Question"
    if agent == "risk":
        return "Risk: no\nReason: The client worries about her exams and says nothing about harming herself."
    if agent == "planner":
        return plan_answer(prompt)
    if agent == "scenario_writer":
        return (
            f"Title: Exams after a move {call}\nSituation: A 17-year-old moved cities in her final school year and "
            "fears she will fail the exams that decide her university place."
        )
    return "That sounds heavy. What goes through your mind when you worry?"
