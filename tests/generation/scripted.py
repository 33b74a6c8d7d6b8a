"""A scripted backend for unit tests of agent logic: it answers from a function, records every call."""

from generation.backends import Completion, SamplingParams


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
    """Which agent a prompt is for, read from its system prompt."""
    return "client" if "role-playing a person" in prompt[0]["content"] else "counselor"


def default_reply(prompt, call):
    if speaker(prompt) == "client":
        return "I keep worrying that I will fail my exams."
    return "That sounds heavy. What goes through your mind when you worry?"
