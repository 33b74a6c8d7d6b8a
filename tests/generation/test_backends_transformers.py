"""The transformers backend: a lockstep batch shares the work on its prompts' common start and answers as if each
prompt were alone."""

import pytest

from generation.agents.psyroom import client_messages
from generation.backends.base import SamplingParams
from generation.backends.local import TransformersBackend, auto_dtype

# torch and the decoding module come as fixtures (tests/generation/conftest.py): imported by the first test that
# needs them, not by collecting the suite, which every test process does.


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([[1, 2, 3, 4], [1, 2, 3, 5]], 3),
        ([[1, 2, 3], [1, 2, 3, 4, 5]], 2),  # every row keeps at least one token of its own
        ([[1, 2, 3], [1, 2, 3]], 2),
        ([[7, 2], [1, 2]], 0),
        ([[1], [1]], 0),
    ],
)
def test_shared_start(rows, expected, decoding):
    assert decoding.shared_start(rows) == expected


@pytest.fixture(scope="module")
def bundled():
    # float32: a batch of 3 and a row alone then compute the same numbers to the last bit that matters for a greedy
    # choice. In bfloat16 (on a CPU with AMX, the default) a batch's rounding differs from a row's, and a near-tie
    # can go the other way.
    return TransformersBackend(
        name="smollm2-135m-instruct", path="bundled:smollm2-135m-instruct", device="cpu", dtype="float32"
    )


GREEDY = SamplingParams(max_new_tokens=16, temperature=0, top_p=1.0, repetition_penalty=1.0)
SITUATIONS = ["Exams are coming.", "My boss shouts at me every day and I cannot sleep.", "I failed a test."]


def _client(situation: str, turns: list[dict]) -> list[dict]:
    return client_messages(
        version="v1", emotion="Self-imposed pressure", category="Anxiety", situation=situation, turns=turns
    )


def _plain(backend, prompts) -> list:
    """Each prompt alone, with nothing reused."""
    from generation.backends import decoding

    store, backend._store = backend._store, decoding.KVStore(0)
    try:
        return [backend.generate([prompt], GREEDY)[0] for prompt in prompts]
    finally:
        backend._store = store


@pytest.mark.e2e
def test_reused_keys_and_values_give_the_answers_each_prompt_gets_alone(bundled, torch, decoding):
    bundled._store = decoding.KVStore(decoding.KV_STORE_TOKENS)
    first = [_client(s, []) for s in SITUATIONS]

    # The first turn: the rows share their system prompt's start, which is run once and stored.
    shared = bundled.generate(first, GREEDY)
    assert bundled._store.rows[0].ids.shape[0] >= decoding.SHARED_START_MIN_TOKENS
    alone = _plain(bundled, first)
    assert [c.text for c in shared] == [c.text for c in alone]
    assert [c.prompt_tokens for c in shared] == [c.prompt_tokens for c in alone]

    # The client's next turn continues its last prompt and answer: those come from the store.
    second = [
        _client(s, [{"role": "client", "text": c.text}, {"role": "counselor", "text": "What worries you most?"}])
        for s, c in zip(SITUATIONS, shared, strict=True)
    ]
    rows = [
        torch.tensor(bundled.tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True)["input_ids"])
        for p in second
    ]
    with torch.inference_mode():
        batch = decoding.layout(bundled.model, bundled._store, rows, pad=bundled.tokenizer.pad_token_id, room=16)
    assert batch.cache.get_seq_length() > max(c.prompt_tokens for c in shared)
    again = bundled.generate(second, GREEDY)
    assert [c.text for c in again] == [c.text for c in _plain(bundled, second)]


@pytest.mark.e2e
def test_the_store_keeps_within_its_budget(bundled, decoding):
    bundled._store = decoding.KVStore(400)
    for situation in SITUATIONS:
        bundled.generate([_client(situation, [])], GREEDY)
    assert 0 < sum(len(row.ids) for row in bundled._store.rows) <= 400


def test_auto_dtype_is_bfloat16_where_the_hardware_multiplies_it(monkeypatch, torch):
    assert auto_dtype("cuda") == "bfloat16"
    assert auto_dtype("cuda:1") == "bfloat16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert auto_dtype("cpu") == "bfloat16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert auto_dtype("cpu") == "float32"
    assert auto_dtype("mps") == "float32"


@pytest.mark.e2e
def test_the_backend_runs_in_the_dtype_it_reports(bundled, torch):
    assert bundled.runtime == {"device": "cpu", "dtype": "float32"}
    assert bundled.model.dtype == torch.float32
    auto = TransformersBackend(name="smollm2-135m-instruct", path="bundled:smollm2-135m-instruct", device="cpu")
    assert auto.runtime == {"device": "cpu", "dtype": auto_dtype("cpu")}
    assert auto.model.dtype == getattr(torch, auto_dtype("cpu"))
    assert auto.generate([_client(SITUATIONS[0], [])], GREEDY)[0].completion_tokens > 0


@pytest.mark.e2e
def test_a_prompt_that_starts_the_answer_is_continued(bundled):
    question = _client(SITUATIONS[0], [])
    started = [*question, {"role": "assistant", "content": "Risk level:"}]
    text = bundled._chat_text(started)
    assert text.endswith("<|im_start|>assistant\nRisk level:")
    assert bundled._chat_text(question).endswith("<|im_start|>assistant\n")
    [continued, fresh] = bundled.generate([started, question], GREEDY)
    assert continued.completion_tokens > 0
    # The continuation is what the model writes after "Risk level:", alone as in a batch.
    assert continued.text == _plain(bundled, [started])[0].text
    assert fresh.text == _plain(bundled, [question])[0].text


def _full_forward_scores(backend, prompt, choices, torch):
    """Each choice's log-probability computed the plain way: prompt and choice run together, nothing reused."""
    ids = backend.tokenizer(backend._chat_text(prompt), add_special_tokens=False)["input_ids"]
    eos = backend.tokenizer.eos_token_id
    scores = []
    for choice in choices:
        tail = list(backend.tokenizer(choice, add_special_tokens=False)["input_ids"]) + [eos]
        row = torch.tensor([list(ids) + tail])
        logprobs = torch.log_softmax(backend.model(input_ids=row).logits[0].float(), dim=-1)
        scores.append(float(sum(logprobs[len(ids) + j - 1, token] for j, token in enumerate(tail))))
    return scores


@pytest.mark.e2e
def test_a_choice_is_ranked_as_a_plain_forward_pass_ranks_it_and_is_always_one_of_the_choices(bundled, torch, decoding):
    from generation.backends.base import Structure

    # Labels that share a start ("anxiety.1" / "anxiety.10") must be scored whole, end of turn included.
    choices = ("anxiety.1", "anxiety.10", "sadness.3", "anger.2")
    prompt = [{"role": "user", "content": "Which label fits 'I cannot sleep before exams'? Answer with a key."}]
    ids = bundled.tokenizer(bundled._chat_text(prompt), add_special_tokens=False)["input_ids"]
    eos = bundled.tokenizer.eos_token_id
    rows = [list(bundled.tokenizer(c, add_special_tokens=False)["input_ids"]) + [eos] for c in choices]
    with torch.inference_mode():
        ranked = decoding.rank_choices(bundled.model, list(ids), rows)
        in_pairs = decoding.rank_choices(bundled.model, list(ids), rows, rows=3)  # groups of 3 and 1
        plain = _full_forward_scores(bundled, prompt, choices, torch)
    assert ranked == pytest.approx(plain, abs=1e-3) and in_pairs == pytest.approx(plain, abs=1e-3)
    params = SamplingParams(max_new_tokens=8, structure=Structure(choices=choices))
    prompts = [prompt, [{"role": "user", "content": "Say something unrelated, anything at all."}]]
    answers = bundled.generate(prompts, params)
    assert all(a.text in choices and not a.truncated for a in answers)
    assert answers[0].text == choices[max(range(len(plain)), key=plain.__getitem__)]


@pytest.mark.e2e
def test_a_regex_or_a_json_schema_is_refused_rather_than_answered_unconstrained(bundled):
    from generation.backends.base import ModelLoadError, Structure

    for structure in (Structure(regex="[1-5]"), Structure(json_schema='{"type": "integer"}')):
        with pytest.raises(ModelLoadError, match="needs a model server with structured outputs"):
            bundled.generate([[{"role": "user", "content": "Score it."}]], SamplingParams(structure=structure))
