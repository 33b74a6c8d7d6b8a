"""PsyRoom A dialogues: a client agent and a counselor agent take turns, every dialogue of a batch in lockstep.

Turn t of every live dialogue in the batch is one batched model call: that is what keeps a GPU busy. A dialogue
whose agent fails twice on the same turn leaves the batch as a failure, with the raw text kept; the others go on.
"""

from dataclasses import dataclass, field

from ..agents import AgentOutputError, client_messages, counselor_messages, parse_turn
from ..backends import Backend, SamplingParams

PROMPT_VERSION = "v1"
PIPELINE = "dialogue"
RETRIES_PER_TURN = 1


@dataclass
class DialogueState:
    index: int
    turns: list[dict] = field(default_factory=list)
    failure: dict | None = None
    repairs: dict[str, int] = field(default_factory=dict)


@dataclass
class BatchResult:
    dialogues: list[DialogueState]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0


def generate_dialogues(
    backend: Backend,
    *,
    indexes: list[int],
    turns: int,
    emotion: str,
    category: str,
    situation: str,
    sampling: SamplingParams,
    version: str = PROMPT_VERSION,
) -> BatchResult:
    """Generate one dialogue per index in lockstep; ``turns`` turns each, starting with the client."""
    states = [DialogueState(index=i) for i in indexes]
    result = BatchResult(dialogues=states)
    for t in range(turns):
        role = "client" if t % 2 == 0 else "counselor"
        pending = [s for s in states if s.failure is None]
        for attempt in range(RETRIES_PER_TURN + 1):
            if not pending:
                break
            prompts = [
                client_messages(version=version, emotion=emotion, category=category, situation=situation, turns=s.turns)
                if role == "client"
                else counselor_messages(version=version, turns=s.turns)
                for s in pending
            ]
            # A distinct seed per turn and attempt: a retry must not sample the same bad text again.
            params = SamplingParams(
                max_new_tokens=sampling.max_new_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                repetition_penalty=sampling.repetition_penalty,
                seed=sampling.seed * 1_000 + t * 10 + attempt,
            )
            completions = backend.generate(prompts, params)
            result.calls += 1
            retry = []
            for state, completion in zip(pending, completions, strict=True):
                result.prompt_tokens += completion.prompt_tokens
                result.completion_tokens += completion.completion_tokens
                try:
                    parsed = parse_turn(completion.text, role=role, truncated=completion.truncated)
                except AgentOutputError as error:
                    if attempt < RETRIES_PER_TURN:
                        retry.append(state)
                    else:
                        state.failure = {"index": state.index, "turn": t, "reason": error.reason, "raw": error.raw}
                    continue
                for repair in parsed.repairs:
                    state.repairs[repair] = state.repairs.get(repair, 0) + 1
                state.turns.append({"role": role, "text": parsed.text})
            pending = retry
    return result
