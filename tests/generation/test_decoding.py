"""The decode loop on a tiny model with random weights: rows that end leave the batch without changing what the
others write, the cache layer that grows in place holds what concatenation would, and sampling keeps to its rules."""

import pytest

from generation.backends.base import SamplingParams

# torch, transformers and the decoding module come as fixtures (tests/generation/conftest.py): imported by the first
# test that needs them, not by collecting the suite, which every test process does.

GREEDY = SamplingParams(max_new_tokens=12, temperature=0, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def tiny(torch, transformers):
    torch.manual_seed(7)
    config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return transformers.LlamaForCausalLM(config).eval()


def _decode(model, rows, *, eos, store=None, params=GREEDY):
    import torch

    from generation.backends import decoding

    store = store or decoding.KVStore(0)
    with torch.inference_mode():
        batch = decoding.layout(model, store, rows, pad=0, room=params.max_new_tokens)
        return decoding.decode(model, batch, params, eos=eos, vocabulary=96, store=store)


def test_a_row_that_ends_leaves_the_batch_and_the_others_write_what_they_write_alone(tiny, torch, decoding):
    rows = [torch.tensor(r) for r in ([5, 9, 13, 40, 41], [7, 8, 60], [3, 30, 31, 32, 33, 34, 35], [11, 12])]
    never = -1
    alone = [_decode(tiny, [row], eos=never)[0] for row in rows]
    # The end-of-turn token: one that the first row writes early and some other row does not write at all.
    eos = next(t for t in alone[0][1:] if any(t not in other for other in alone[1:]))
    expected = [answer[: answer.index(eos) + 1] if eos in answer else answer for answer in alone]
    assert any(len(answer) < GREEDY.max_new_tokens for answer in expected)  # one row does end early
    assert any(len(answer) == GREEDY.max_new_tokens for answer in expected)  # and one does not

    store = decoding.KVStore(10_000)
    assert _decode(tiny, rows, eos=eos, store=store) == expected
    # Every row went to the store as it left: its prompt and its answer, less the last token (never run through the
    # model: the end-of-turn token, or the last one allowed).
    stored = sorted(row.ids.tolist() for row in store.rows)
    assert stored == sorted(row.tolist() + answer[:-1] for row, answer in zip(rows, expected, strict=True))


def test_a_prompt_that_continues_a_stored_row_is_answered_as_if_alone(tiny, torch, decoding):
    store = decoding.KVStore(10_000)
    start = torch.arange(10, 50)  # longer than SHARED_START_MIN_TOKENS
    first = _decode(tiny, [start], eos=-1, store=store)[0]
    follow = torch.cat([start, torch.tensor(first), torch.tensor([70, 71, 72])])
    with torch.inference_mode():
        batch = decoding.layout(tiny, store, [follow], pad=0, room=12)
    assert batch.cache.get_seq_length() == len(start) + len(first) - 1
    assert _decode(tiny, [follow], eos=-1, store=store) == _decode(tiny, [follow], eos=-1)


def test_an_interrupt_stops_the_decode_between_two_steps(tiny, torch, decoding):
    """A cancelled run stops within one decode step: the interrupt is called before each step and its error ends
    the call."""
    steps = []

    class Cancelled(Exception):
        pass

    def interrupt():
        steps.append(1)
        if len(steps) == 3:
            raise Cancelled

    params = SamplingParams(max_new_tokens=12, temperature=0, interrupt=interrupt)
    with pytest.raises(Cancelled):
        _decode(tiny, [torch.tensor([5, 9, 13])], eos=-1, params=params)
    assert len(steps) == 3  # two steps run, the third not
    # A call that is not interrupted writes what it writes without an interrupt.
    quiet = SamplingParams(max_new_tokens=12, temperature=0, interrupt=lambda: None)
    assert _decode(tiny, [torch.tensor([5, 9, 13])], eos=-1, params=quiet) == _decode(
        tiny, [torch.tensor([5, 9, 13])], eos=-1
    )


def test_the_roomy_layer_holds_what_concatenation_holds(torch, decoding):
    layer, expected = decoding.RoomyLayer(room=4), None
    torch.manual_seed(0)
    for step, length in enumerate([6, 1, 1, 1, 1, 1, 3]):
        keys, values = torch.randn(3, 2, length, 8), torch.randn(3, 2, length, 8)
        got_keys, got_values = layer.update(keys, values)
        if expected is None:
            expected = (keys, values)
        else:
            expected = (torch.cat([expected[0], keys], dim=-2), torch.cat([expected[1], values], dim=-2))
        assert torch.equal(got_keys, expected[0]) and torch.equal(got_values, expected[1])
        if step == 1:
            buffer = layer.buffers[0].data_ptr()
        if step in (2, 3, 4):  # within the room: written in place
            assert layer.buffers[0].data_ptr() == buffer
    assert layer.buffers[0].data_ptr() != buffer  # the last step did not fit: a new buffer

    keep = torch.tensor([0, 2])
    layer.batch_select_indices(keep)
    keys, values = torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8)
    got_keys, _ = layer.update(keys, values)
    assert torch.equal(got_keys, torch.cat([expected[0][keep], keys], dim=-2))


def test_next_tokens_follows_penalty_temperature_top_k_and_top_p(torch, decoding):
    generator = torch.Generator().manual_seed(0)
    logits = torch.tensor([[2.0, 1.8, -1.0, -3.0]])
    nothing_seen = torch.zeros(1, 4, dtype=torch.bool)
    first_seen = torch.tensor([[True, False, False, False]])

    assert decoding.next_tokens(logits, nothing_seen, GREEDY, generator).tolist() == [0]
    penalised = SamplingParams(temperature=0, repetition_penalty=1.2)
    assert decoding.next_tokens(logits, first_seen, penalised, generator).tolist() == [1]  # 2.0 / 1.2 < 1.8

    # One token holds 97% of the mass: with top_p 0.9 nothing else is ever drawn; with 0.999 others are.
    peaked = torch.tensor([[8.0, 4.5, 0.0, 0.0]])
    narrow = SamplingParams(temperature=1.0, top_p=0.9, repetition_penalty=1.0)
    wide = SamplingParams(temperature=1.0, top_p=0.999, repetition_penalty=1.0)
    draws = lambda params: {  # noqa: E731
        decoding.next_tokens(peaked, nothing_seen, params, generator).item() for _ in range(400)
    }
    assert draws(narrow) == {0}
    assert draws(wide) > {0}

    # Over a flat vocabulary only the top k are ever drawn.
    flat = torch.zeros(1, 3 * decoding.TOP_K)
    uniform = SamplingParams(temperature=1.0, top_p=1.0, repetition_penalty=1.0)
    seen = torch.zeros_like(flat, dtype=torch.bool)
    drawn = {decoding.next_tokens(flat, seen, uniform, generator).item() for _ in range(2000)}
    assert 0.8 * decoding.TOP_K < len(drawn) <= decoding.TOP_K


def test_the_packed_output_layer_gives_the_logits_and_answers_of_the_plain_one(torch, transformers, decoding):
    torch.manual_seed(3)
    config = transformers.LlamaConfig(
        vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
    )  # fmt: skip
    plain = transformers.LlamaForCausalLM(config).eval()
    packed = transformers.LlamaForCausalLM(config).eval()
    packed.load_state_dict(plain.state_dict())
    rows = [torch.tensor(r) for r in ([5, 9, 13, 40, 41], [7, 8, 60], [3, 30, 31, 32])]

    assert decoding.pack_output_layer(packed)
    assert isinstance(packed.get_output_embeddings(), decoding.PackedLinear)
    # The input embeddings keep the tied weight.
    assert torch.equal(packed.get_input_embeddings().weight, plain.get_input_embeddings().weight)
    with torch.inference_mode():
        ids = torch.tensor([[5, 9, 13, 40, 41]])
        assert torch.allclose(packed(ids).logits, plain(ids).logits, atol=1e-5)
    assert _decode(packed, rows, eos=-1) == _decode(plain, rows, eos=-1)

    # Not in bfloat16, and not twice.
    assert not decoding.pack_output_layer(transformers.LlamaForCausalLM(config).to(torch.bfloat16))
    assert not decoding.pack_output_layer(packed)
