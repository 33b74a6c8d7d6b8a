"""PsyRoom A dialogues: a client agent and a counselor agent take turns, every dialogue of a batch in lockstep.

Turn t of every live dialogue in the batch is one batched model call: that is what keeps a GPU busy. Then, also
batched: the supervisor scores each dialogue on five dimensions and writes feedback; dialogues under the threshold
are regenerated with that feedback (up to a limit, every attempt kept); the emotion classifier labels each dialogue
with one of the 35 sub-emotions; the risk agent asks whether the client expresses suicide or self-harm risk (a yes,
or an answer that cannot be read, becomes a risk flag: ``risk_flags``); optionally every counselor turn gets a
support-strategy label.

Model output is untrusted: every answer is parsed strictly, retried once, and what cannot be used is counted and
kept with its raw text. A dialogue whose agent fails twice on one turn leaves the batch; the others go on.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..agents.psyroom import (
    SUPERVISOR_DIMENSIONS,
    AgentOutputError,
    ParsedTurn,
    classifier_messages,
    client_messages,
    counselor_messages,
    parse_emotion,
    parse_feedback,
    parse_reason,
    parse_risk,
    parse_score,
    parse_strategy,
    parse_turn,
    risk_messages,
    strategy_messages,
    supervisor_feedback_messages,
    supervisor_score_messages,
)
from ..backends.base import Backend, Completion, SamplingChange, SamplingParams, Structure

PROMPT_VERSION = "v1"
# The prompt version a run uses, by its language.
PROMPT_VERSIONS = {"en": PROMPT_VERSION, "zh": "v1-zh"}
PIPELINE = "dialogue"
RETRIES = 1
# Reconstruction rewrites at most this many turns of a source dialogue.
RECONSTRUCT_MAX_TURNS = 40
# Judges answer briefly and should not be creative.
JUDGE_SAMPLING: SamplingChange = {"max_new_tokens": 64, "temperature": 0.3}
# The supervisor's score of one dimension: one of these, enforced while decoding.
SCORE_CHOICES = Structure(choices=("1", "2", "3", "4", "5"))


@dataclass
class Usage:
    """Tokens, calls and what the parsers caught, for one chunk."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    stats: Counter = field(default_factory=Counter)


def turn_parser(role: str) -> Callable[[int, Completion], ParsedTurn]:
    """``call_agents``' parser for the turns of the agent playing ``role``."""

    def parse(index: int, completion: Completion) -> ParsedTurn:
        return parse_turn(completion.text, role=role, truncated=completion.truncated)

    return parse


def call_agents(
    backend: Backend,
    prompts: list[list[dict]],
    parse: Callable[[int, Completion], Any],
    params: SamplingParams,
    usage: Usage,
    *,
    retries: int = RETRIES,
) -> list[Any]:
    """One batched call for all prompts, then up to ``retries`` batched retries of those whose answer could not be
    parsed.

    ``parse(i, completion)`` reads the answer to prompt i. Returns, per prompt, the parsed value or the last
    ``AgentOutputError``. Every failure is counted by reason.
    """
    results: list[Any] = [None] * len(prompts)
    pending = list(range(len(prompts)))
    for attempt in range(retries + 1):
        if not pending:
            break
        # A distinct seed per attempt: a retry must not sample the same bad text again.
        completions = backend.generate([prompts[i] for i in pending], replace(params, seed=params.seed * 10 + attempt))
        usage.calls += 1
        retry = []
        for i, completion in zip(pending, completions, strict=True):
            usage.prompt_tokens += completion.prompt_tokens
            usage.completion_tokens += completion.completion_tokens
            try:
                results[i] = parse(i, completion)
            except AgentOutputError as error:
                usage.stats[error.reason] += 1
                results[i] = error
                if attempt < retries:
                    retry.append(i)
        pending = retry
    return results


def report_stage(backend: Backend, stage: str) -> None:
    """Tell a watched backend (``generation/runwatch.py``) where the chunk is, for the run's progress; any other
    backend (a test's) has nothing to tell."""
    note = getattr(getattr(backend, "watch", None), "note", None)
    if note is not None:
        note(stage)


@dataclass
class DialogueState:
    index: int
    turns: list[dict] = field(default_factory=list)
    failure: dict | None = None
    repairs: dict[str, int] = field(default_factory=dict)
    feedback: str = ""
    attempts: list[dict] = field(default_factory=list)
    emotion: dict | None = None
    # The risk agent's answer (``screen_risk``): {"answer": "yes" | "no" | None, "reason", "raw"[, "error"]}.
    risk: dict | None = None

    @property
    def label(self) -> str:
        """The classifier's label of a dialogue it labelled."""
        assert self.emotion is not None and self.emotion["label"] is not None
        return self.emotion["label"]


@dataclass
class BatchResult:
    dialogues: list[DialogueState]
    usage: Usage = field(default_factory=Usage)

    # Kept for callers that read the totals directly.
    @property
    def prompt_tokens(self) -> int:
        return self.usage.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.usage.completion_tokens

    @property
    def calls(self) -> int:
        return self.usage.calls


def _write_turns(
    backend: Backend,
    states: list[DialogueState],
    *,
    turns: int,
    emotion: str,
    category: str,
    situation: str,
    sampling: SamplingParams,
    version: str,
    usage: Usage,
) -> None:
    """Write ``turns`` turns for each state, client first, in lockstep."""
    for t in range(turns):
        role = "client" if t % 2 == 0 else "counselor"
        live = [s for s in states if s.failure is None]
        if not live:
            return
        report_stage(backend, f"turn {t + 1} of {turns}" + (" (rewrite)" if states[0].feedback else ""))
        prompts = [
            client_messages(version=version, emotion=emotion, category=category, situation=situation, turns=s.turns)
            if role == "client"
            else counselor_messages(version=version, turns=s.turns, feedback=s.feedback)
            for s in live
        ]
        parsed = call_agents(
            backend,
            prompts,
            turn_parser(role),
            replace(sampling, seed=sampling.seed * 1_000 + t),
            usage,
        )
        for state, result in zip(live, parsed, strict=True):
            if isinstance(result, AgentOutputError):
                state.failure = {"index": state.index, "turn": t, "reason": result.reason, "raw": result.raw}
                continue
            for repair in result.repairs:
                state.repairs[repair] = state.repairs.get(repair, 0) + 1
                usage.stats[repair] += 1
            state.turns.append({"role": role, "text": result.text})


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
    result = BatchResult(dialogues=[DialogueState(index=i) for i in indexes])
    _write_turns(
        backend,
        result.dialogues,
        turns=turns,
        emotion=emotion,
        category=category,
        situation=situation,
        sampling=sampling,
        version=version,
        usage=result.usage,
    )
    return result


def supervise(
    backend: Backend, states: list[DialogueState], *, sampling: SamplingParams, version: str, usage: Usage
) -> list[dict]:
    """Score each dialogue on every dimension with reasons, and write feedback: two batched calls (and retries).

    Each score is a constrained choice among 1 to 5, so every answer is a score; then, with the score given as the
    start of the answer, the supervisor writes its reason, in the same batch as the feedback."""
    report_stage(backend, "supervisor")
    judge = replace(sampling, **JUDGE_SAMPLING)
    dims = list(SUPERVISOR_DIMENSIONS)
    score_prompts = [
        supervisor_score_messages(version=version, turns=state.turns, dimension=d) for state in states for d in dims
    ]
    scored = call_agents(
        backend, score_prompts, lambda i, c: parse_score(c.text)[0], replace(judge, structure=SCORE_CHOICES), usage
    )
    # The reasons (for the scores read) and the feedback, in one call.
    read = [i for i, score in enumerate(scored) if not isinstance(score, AgentOutputError)]
    prompts = [[*score_prompts[i], {"role": "assistant", "content": f"{scored[i]} - "}] for i in read]
    prompts += [supervisor_feedback_messages(version=version, turns=state.turns) for state in states]

    def parse(i: int, completion: Completion):
        return parse_reason(completion.text) if i < len(read) else parse_feedback(completion.text)

    answers = call_agents(backend, prompts, parse, judge, usage)
    reasons = dict(zip(read, answers, strict=False))
    feedbacks = answers[len(read) :]
    reviews = []
    for n, state in enumerate(states):
        scores, unparsed = {}, {}
        for k, dim in enumerate(dims):
            score = scored[n * len(dims) + k]
            if isinstance(score, AgentOutputError):
                unparsed[dim] = score.raw
            else:
                scores[dim] = {"score": score, "reason": reasons[n * len(dims) + k]}
        feedback = feedbacks[n]
        # A supervision is whole or it failed: a mean of the scores that happened to be read would judge the
        # dialogue on fewer criteria than it claims (one of five read would stand for all five).
        review = {
            "turns": state.turns,
            "scores": scores,
            "mean": None if unparsed else round(sum(s["score"] for s in scores.values()) / len(scores), 2),
            "feedback": "" if isinstance(feedback, AgentOutputError) else feedback,
        }
        if unparsed:
            review["unparsed"] = unparsed
            review["error"] = "scores_unread"
            usage.stats["supervision_failed"] += 1
        reviews.append(review)
    return reviews


def classify(
    backend: Backend,
    states: list[DialogueState],
    *,
    labels: dict[str, str],
    target: str,
    sampling: SamplingParams,
    version: str,
    usage: Usage,
) -> None:
    """Label each dialogue with one sub-emotion of the taxonomy and record whether it agrees with the target."""
    report_stage(backend, "emotion classifier")
    prompts = [classifier_messages(version=version, turns=s.turns, labels=labels) for s in states]
    # A constrained choice among the taxonomy's keys: every answer is a label (still parsed: a model server that
    # ignored the constraint is caught there).
    params = replace(sampling, **JUDGE_SAMPLING, structure=Structure(choices=tuple(labels)))
    answers = call_agents(backend, prompts, lambda i, c: parse_emotion(c.text, labels=labels), params, usage)
    for state, answer in zip(states, answers, strict=True):
        if isinstance(answer, AgentOutputError):
            state.emotion = {"label": None, "error": answer.reason, "raw": answer.raw, "target": target}
        else:
            key, reason = answer
            state.emotion = {"label": key, "reason": reason, "target": target, "agrees": key == target}


# A flag's detail is deterministic and short: what a reviewer reads in the flag list.
RISK_DETAIL_CHARS = 300
RISK_UNREAD_DETAIL = "the risk agent's answer could not be read"


def screen_risk(
    backend: Backend, states: list[DialogueState], *, sampling: SamplingParams, version: str, usage: Usage
) -> None:
    """Ask the risk agent whether the client of each dialogue expresses suicide or self-harm risk (one batched call,
    and a retry of the answers that cannot be read). Each state's ``risk`` keeps the answer with its raw text."""
    report_stage(backend, "risk agent")
    prompts = [risk_messages(version=version, turns=s.turns) for s in states]
    answers = call_agents(
        backend, prompts, lambda i, c: (*parse_risk(c.text), c.text), replace(sampling, **JUDGE_SAMPLING), usage
    )
    for state, answer in zip(states, answers, strict=True):
        if isinstance(answer, AgentOutputError):
            state.risk = {"answer": None, "error": answer.reason, "raw": answer.raw}
            usage.stats["risk_agent_unread"] += 1
        else:
            risky, reason, raw = answer
            state.risk = {"answer": "yes" if risky else "no", "reason": reason, "raw": raw}
            if risky:
                usage.stats["risk_agent_yes"] += 1


def risk_flags(risk: dict | None) -> list[dict]:
    """The risk flags a risk agent's answer opens: ``[{"code", "detail"}]``.

    A yes opens one. So does an answer that could not be read: taking it for a no would let a dialogue the agent may
    have meant to flag through unseen, so a senior clinician looks instead. No answer (the agent did not run) opens
    none: the rules still screen every dialogue.
    """
    if risk is None or risk["answer"] == "no":
        return []
    if risk["answer"] == "yes":
        detail = f"risk agent: {risk['reason']}" if risk["reason"] else "risk agent: yes, without a reason"
        return [{"code": "self_harm", "detail": detail[:RISK_DETAIL_CHARS]}]
    return [{"code": "self_harm", "detail": RISK_UNREAD_DETAIL}]


def label_strategies(
    backend: Backend, states: list[DialogueState], *, sampling: SamplingParams, version: str, usage: Usage
) -> None:
    """Give every counselor turn one of the eight ESConv support strategies (one batched call)."""
    slots, prompts = [], []
    for state in states:
        for i, turn in enumerate(state.turns):
            if turn["role"] == "counselor":
                client = state.turns[i - 1]["text"] if i > 0 else ""
                slots.append((state, i))
                prompts.append(strategy_messages(version=version, client=client, counselor=turn["text"]))
    answers = call_agents(
        backend, prompts, lambda i, c: parse_strategy(c.text), replace(sampling, **JUDGE_SAMPLING), usage
    )
    for (state, i), answer in zip(slots, answers, strict=True):
        if not isinstance(answer, AgentOutputError):
            state.turns[i]["strategy"] = answer


@dataclass(frozen=True)
class DialogueOptions:
    turns: int = 6
    supervisor: bool = True
    threshold: float = 3.0
    # Attempts in all, the first included: 2 means one regeneration at most.
    max_attempts: int = 2
    classify: bool = True
    # The model-based risk screen; it complements the rules (``generation/risk.py``), which always run.
    risk_agent: bool = True
    strategies: bool = False


def dialogue_chunk(
    backend: Backend,
    *,
    indexes: list[int],
    options: DialogueOptions,
    emotion: str,
    category: str,
    situation: str,
    target: str,
    labels: dict[str, str],
    sampling: SamplingParams,
    version: str = PROMPT_VERSION,
) -> BatchResult:
    """Generate, supervise (regenerating under the threshold), classify, screen for risk and label one chunk of
    dialogues."""
    result = generate_dialogues(
        backend,
        indexes=indexes,
        turns=options.turns,
        emotion=emotion,
        category=category,
        situation=situation,
        sampling=sampling,
        version=version,
    )
    usage = result.usage
    done = [s for s in result.dialogues if s.failure is None]
    if options.supervisor:
        to_judge = done
        for attempt in range(1, options.max_attempts + 1):
            if not to_judge:
                break
            reviews = supervise(
                backend, to_judge, sampling=replace(sampling, seed=sampling.seed + 7919 * attempt), version=version,
                usage=usage,
            )  # fmt: skip
            retry = []
            for state, review in zip(to_judge, reviews, strict=True):
                state.attempts.append(review)
                below = review["mean"] is not None and review["mean"] < options.threshold
                if below and attempt < options.max_attempts and review["feedback"]:
                    retry.append(state)
            if not retry:
                break
            usage.stats["regenerated"] += len(retry)
            # A regeneration starts the dialogue again with the supervisor's feedback given to the counselor.
            fresh = [DialogueState(index=s.index, feedback=s.attempts[-1]["feedback"]) for s in retry]
            _write_turns(
                backend, fresh, turns=options.turns, emotion=emotion, category=category, situation=situation,
                sampling=replace(sampling, seed=sampling.seed + 104_729 * attempt), version=version, usage=usage,
            )  # fmt: skip
            to_judge = []
            for state, new in zip(retry, fresh, strict=True):
                if new.failure is None:
                    state.turns, state.feedback = new.turns, new.feedback
                    for repair, n in new.repairs.items():
                        state.repairs[repair] = state.repairs.get(repair, 0) + n
                    to_judge.append(state)
                else:
                    # The earlier attempt stands; the failed one is recorded with its raw text.
                    state.attempts.append({"failure": new.failure, "feedback": new.feedback})
        for state in done:
            # Keep the best-scored attempt (the last one on a tie).
            scored = [a for a in state.attempts if a.get("mean") is not None]
            if scored:
                best = max(reversed(scored), key=lambda a: a["mean"])
                state.turns = best["turns"]
    if options.classify and done:
        classify(backend, done, labels=labels, target=target, sampling=sampling, version=version, usage=usage)
        usage.stats["emotion_agrees"] += sum(1 for s in done if s.emotion and s.emotion.get("agrees"))
    if options.risk_agent and done:
        # On the turns kept: the best attempt's, after the supervisor.
        screen_risk(backend, done, sampling=sampling, version=version, usage=usage)
    if options.strategies and done:
        label_strategies(backend, done, sampling=sampling, version=version, usage=usage)
    return result


def reconstruct_chunk(
    backend: Backend,
    *,
    sources: list[tuple[int, list[dict]]],
    options: DialogueOptions,
    labels: dict[str, str],
    sampling: SamplingParams,
    version: str = PROMPT_VERSION,
) -> BatchResult:
    """Rewrite real dialogues into labelled ones: classify each, rewrite its counselor turns, label the strategies,
    and (``options.risk_agent``) ask the risk agent about the result.

    ``sources`` holds (index, turns) pairs; a source longer than ``RECONSTRUCT_MAX_TURNS`` is cut. The client's
    turns are kept verbatim; counselor turn t of every dialogue is rewritten in one batched call, seeing the
    rewritten turns before it. A dialogue that cannot be classified, or whose counselor agent fails twice on one
    turn, fails alone with the raw answer. The supervisor, when enabled, scores the result once.
    """
    result = BatchResult(dialogues=[DialogueState(index=i) for i, _ in sources])
    usage = result.usage
    originals = {i: turns[:RECONSTRUCT_MAX_TURNS] for i, turns in sources}
    states = result.dialogues
    for state in states:
        state.turns = originals[state.index]
    classify(backend, states, labels=labels, target="", sampling=sampling, version=version, usage=usage)
    for state in states:
        emotion = state.emotion
        assert emotion is not None  # classify() labels every state
        emotion.pop("target", None)
        emotion.pop("agrees", None)
        if emotion["label"] is None:
            state.failure = {"index": state.index, "reason": emotion["error"], "raw": emotion["raw"]}
        state.turns = []
    for t in range(max((len(turns) for turns in originals.values()), default=0)):
        live = [s for s in states if s.failure is None and t < len(originals[s.index])]
        for state in live:
            if originals[state.index][t]["role"] == "client":
                state.turns.append(dict(originals[state.index][t]))
        writing = [s for s in live if originals[s.index][t]["role"] == "counselor"]
        if not writing:
            continue
        report_stage(backend, f"turn {t + 1} of {max(len(turns) for turns in originals.values())}")
        prompts = [counselor_messages(version=version, turns=s.turns, reconstruct=labels[s.label]) for s in writing]
        parsed = call_agents(
            backend,
            prompts,
            lambda i, c: parse_turn(c.text, role="counselor", truncated=c.truncated),
            replace(sampling, seed=sampling.seed * 1_000 + t),
            usage,
        )
        for state, answer in zip(writing, parsed, strict=True):
            if isinstance(answer, AgentOutputError):
                state.failure = {"index": state.index, "turn": t, "reason": answer.reason, "raw": answer.raw}
                continue
            for repair in answer.repairs:
                state.repairs[repair] = state.repairs.get(repair, 0) + 1
                usage.stats[repair] += 1
            state.turns.append({"role": "counselor", "text": answer.text})
    done = [s for s in states if s.failure is None]
    if done:
        label_strategies(backend, done, sampling=sampling, version=version, usage=usage)
    if options.risk_agent and done:
        screen_risk(backend, done, sampling=sampling, version=version, usage=usage)
    if options.supervisor and done:
        reviews = supervise(backend, done, sampling=sampling, version=version, usage=usage)
        for state, review in zip(done, reviews, strict=True):
            state.attempts.append(review)
    return result
