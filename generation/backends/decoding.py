"""Decoding for ``TransformersBackend``: a batch laid out over reused keys and values, and the token-by-token loop.

- ``KVStore`` keeps the keys and values of the rows run last, so that a prompt that continues one of them is only
  prefilled from where it differs; ``layout`` builds a batch on top of them.
- ``decode`` samples token by token; a row that has ended leaves the batch at once.
- ``RoomyLayer`` writes each step's keys and values into room kept free, instead of copying the cache every step.
- ``pack_output_layer``: on the CPU in float32, the output layer's weight is laid out once for oneDNN.
- ``rank_choices``: a constrained choice, by the log-probability of each allowed answer.

This module imports torch and transformers; ``generation.backends.local`` imports it only when a model is loaded.
"""

import copy
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

# A cached start shorter than this is not worth it.
SHARED_START_MIN_TOKENS = 32
# The store keeps keys and values of this many tokens in all: about the last three calls of a lockstep batch of 8
# dialogues (46 kB a token for the bundled model; about 128 kB for a 7B model with grouped-query attention).
KV_STORE_TOKENS = 16_384
# A constrained choice runs this many allowed answers at a time, each on its own copy of the prompt's keys and
# values (the 35 sub-emotion keys at once would copy a classifier prompt's 46 MB, in float32, 35 times).
CHOICE_ROWS = 8
# Sampling keeps the k most likely tokens before the top-p cut, as transformers does by default.
TOP_K = 50


@dataclass
class Batch:
    input_ids: Any  # (rows, cached + width): the cached start, then what is left to prefill
    attention_mask: Any
    cache: Cache  # holds the first ``cached`` positions of every row


@dataclass
class StoredRow:
    ids: Any  # (tokens,) on the CPU
    kv: list  # per layer: (keys, values), each (heads, tokens, head_dim) on the model's device


class KVStore:
    """The keys and values of the rows the backend ran last (prompt and answer), oldest first, within a budget.

    An agent's next prompt in a dialogue is its previous prompt, its answer and the other side's reply, so it starts
    with a stored row and only the rest is run through the model. A stored row is only ever a prefix of the tokens
    it was computed from, and keys and values depend only on earlier tokens and their positions: reusing them gives
    the answer the model would give to the whole prompt (in float32; in bfloat16, up to rounding, which a sampled
    answer can amplify into different words).
    """

    def __init__(self, budget_tokens: int):
        self.rows: list[StoredRow] = []
        self.budget_tokens = budget_tokens

    def match(self, ids) -> tuple[StoredRow | None, int]:
        """The stored row with the longest common start with ``ids`` (leaving at least one token of its own)."""
        best, best_n = None, 0
        for stored in reversed(self.rows):
            n = min(len(stored.ids), len(ids) - 1)
            if n <= best_n:
                continue
            differ = (stored.ids[:n] != ids[:n]).nonzero()
            n = int(differ[0]) if len(differ) else n
            if n > best_n:
                best, best_n = stored, n
        return best, best_n

    def add_rows(self, tokens, mask, cache: Cache, rows: list[int]) -> None:
        """Store the given rows of a batch: their tokens where ``mask`` is 1 (not padding), with their keys and
        values. ``tokens`` and ``mask`` are as long as the cache."""
        if self.budget_tokens <= 0:
            return
        for i in rows:
            keep = mask[i].nonzero().flatten()
            # A full-attention cache (``cache_with_room``): every layer has its keys and values filled in.
            kv = [
                (layer.keys[i].index_select(1, keep), layer.values[i].index_select(1, keep))  # type: ignore[union-attr,index]
                for layer in cache.layers
            ]
            self.rows.append(StoredRow(ids=tokens[i, keep].cpu(), kv=kv))
        total = sum(len(row.ids) for row in self.rows)
        while self.rows and total > self.budget_tokens:
            total -= len(self.rows.pop(0).ids)


def layout(model, store: KVStore, rows: list, *, pad: int, room: int) -> Batch:
    """Token ids, attention mask and starting cache for the rows, with ``room`` positions to grow into.

    Each row starts with the longest start that the store holds keys and values for (at least
    ``SHARED_START_MIN_TOKENS``, else none). When the rows of a lockstep batch share a start the store does not hold
    (their system prompt, on a dialogue's first turn), that start is run once and stored first. Row i is laid out as
    ``[pad] + cached start + [pad] + its own tokens``: the padding sits before each part, and the position ids follow
    the attention mask, so every row sees the positions it would see alone.
    """
    device = model.device
    if len(rows) > 1:
        shared = shared_start(rows)
        if shared >= SHARED_START_MIN_TOKENS and store.match(rows[0])[1] < shared:
            cache = cache_with_room(model.config, room=0)
            start = rows[0][:shared].to(device)
            model(input_ids=start[None], past_key_values=cache, use_cache=True, logits_to_keep=1)
            store.add_rows(start[None], torch.ones(1, shared, dtype=torch.long, device=device), cache, [0])
    matches = [store.match(row) for row in rows]
    starts = [(stored, n) if n >= SHARED_START_MIN_TOKENS else (None, 0) for stored, n in matches]
    cached = max(n for _, n in starts)
    width = max(len(row) - n for row, (_, n) in zip(rows, starts, strict=True))
    ids, mask = [], []
    for row, (_, n) in zip(rows, starts, strict=True):
        own = len(row) - n
        ids.append([pad] * (cached - n) + row[:n].tolist() + [pad] * (width - own) + row[n:].tolist())
        mask.append([0] * (cached - n) + [1] * n + [0] * (width - own) + [1] * own)
    cache = cache_with_room(model.config, room=width + room)
    some = next((stored for stored, n in starts if n), None)
    for layer, (keys, values) in enumerate(some.kv if some else []):
        shape = (len(rows), keys.shape[0], cached, keys.shape[2])
        batch_keys, batch_values = keys.new_zeros(shape), values.new_zeros(shape)
        for i, (stored, n) in enumerate(starts):
            if stored is not None and n:
                batch_keys[i, :, cached - n :] = stored.kv[layer][0][:, :n]
                batch_values[i, :, cached - n :] = stored.kv[layer][1][:, :n]
        # A full-attention cache (``cache_with_room``): no linear-attention layers, which have no ``update``.
        cache.layers[layer].update(batch_keys, batch_values)  # type: ignore[union-attr]
    return Batch(torch.tensor(ids, device=device), torch.tensor(mask, device=device), cache)


def decode(model, batch: Batch, params, *, eos: int, vocabulary: int, store: KVStore) -> list[list[int]]:
    """The new tokens of each row (``params`` is a ``SamplingParams``), up to its end-of-turn token or
    ``max_new_tokens``.

    A row that has ended leaves the batch at once, so that the rest do not carry it; its keys and values go to the
    store as it leaves. The end-of-turn token itself is never run through the model: the cache stops before it.
    """
    generator = torch.Generator(device=model.device).manual_seed(params.seed)
    tokens, mask, cache = batch.input_ids, batch.attention_mask, batch.cache
    seen = seen_tokens(tokens, mask, vocabulary)
    live = list(range(len(tokens)))  # the input rows still in the batch, in batch order
    answers: list[list[int]] = [[] for _ in live]
    cached = cache.get_seq_length()
    step_ids = tokens[:, cached:]
    step_positions = ((mask.cumsum(-1) - 1).clamp(min=0))[:, cached:]
    interrupt = getattr(params, "interrupt", None)
    for _ in range(params.max_new_tokens):
        if interrupt is not None:
            interrupt()  # raises to stop: a cancelled run stops within one decode step
        logits = model(
            input_ids=step_ids,
            attention_mask=mask,
            position_ids=step_positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]
        chosen = next_tokens(logits.float(), seen, params, generator)
        seen[torch.arange(len(live), device=seen.device), chosen] = True
        tokens = torch.cat([tokens, chosen[:, None]], dim=1)
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
        step_ids, step_positions = chosen[:, None], step_positions[:, -1:] + 1
        for i, token in zip(live, chosen.tolist(), strict=True):
            answers[i].append(token)
        done = chosen == eos
        if done.any():
            store.add_rows(tokens[:, :-1], mask[:, :-1], cache, done.nonzero().flatten().tolist())
            stay = (~done).nonzero().flatten()
            if not len(stay):
                return answers
            live = [live[i] for i in stay.tolist()]
            cache.batch_select_indices(stay)
            tokens, mask, seen = tokens[stay], mask[stay], seen[stay]
            step_ids, step_positions = step_ids[stay], step_positions[stay]
    store.add_rows(tokens[:, :-1], mask[:, :-1], cache, list(range(len(live))))
    return answers


def rank_choices(model, prompt: list[int], choices: list[list[int]], *, rows: int = CHOICE_ROWS) -> list[float]:
    """The log-probability of each of ``choices`` (token ids, each ending with the end-of-turn token, so that a
    label is scored whole: ``anxiety.1`` then the end, not the start of ``anxiety.10``) as the answer to
    ``prompt``.

    The prompt is run once; its keys and values are repeated for ``rows`` choices at a time, which run as one
    right-padded batch on top of them (padding after a choice's end cannot change its own tokens' scores).
    """
    device = model.device
    out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    scores = []
    for start in range(0, len(choices), rows):
        group = choices[start : start + rows]
        last = start + rows >= len(choices)
        # The last group may take the prompt's own cache; the others take a copy (a group's tokens are written
        # into the cache it runs on).
        cache = out.past_key_values if last else copy.deepcopy(out.past_key_values)
        cache.batch_repeat_interleave(len(group))
        width = max(len(c) for c in group)
        ids = torch.zeros(len(group), width, dtype=torch.long, device=device)
        mask = torch.zeros(len(group), len(prompt) + width, dtype=torch.long, device=device)
        mask[:, : len(prompt)] = 1
        for row, choice in enumerate(group):
            ids[row, : len(choice)] = torch.tensor(choice, device=device)
            mask[row, len(prompt) : len(prompt) + len(choice)] = 1
        positions = torch.arange(len(prompt), len(prompt) + width, device=device).expand(len(group), -1)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache).logits
        rest = torch.log_softmax(logits.float(), dim=-1)
        for row, choice in enumerate(group):
            # Token 0 follows the prompt; token j follows the choice's token j - 1.
            total = first[choice[0]] + sum(rest[row, j - 1, choice[j]] for j in range(1, len(choice)))
            scores.append(float(total))
    return scores


def seen_tokens(tokens, mask, vocabulary: int):
    """Per row, which tokens of the vocabulary it holds (padding aside): the repetition penalty's memory."""
    seen = torch.zeros(len(tokens), vocabulary, dtype=torch.bool, device=tokens.device)
    rows = torch.arange(len(tokens), device=tokens.device)[:, None].expand_as(tokens)
    held = mask.bool()
    seen[rows[held], tokens[held]] = True
    return seen


def next_tokens(logits, seen, params, generator):
    """One token per row: the repetition penalty, then greedy, or temperature, top-k, top-p and a draw.

    The draw is among the top k only, never over the whole vocabulary: the tokens transformers' own sampling keeps,
    for a fraction of the work on a batch.
    """
    if params.repetition_penalty != 1.0:
        penalised = torch.where(logits > 0, logits / params.repetition_penalty, logits * params.repetition_penalty)
        logits = torch.where(seen[:, : logits.shape[-1]], penalised, logits)
    if params.temperature <= 0:
        return logits.argmax(-1)
    top, index = (logits / params.temperature).topk(min(TOP_K, logits.shape[-1]), dim=-1)
    probs = top.softmax(-1)
    # Keep the most likely tokens until they reach top_p: a token stays when those before it fall short of it.
    probs = probs.masked_fill(probs.cumsum(-1) - probs >= params.top_p, 0.0)
    draw = torch.multinomial(probs, 1, generator=generator)
    return index.gather(-1, draw).flatten()


def shared_start(rows: list) -> int:
    """How many leading tokens every row has in common, leaving each row at least one token of its own."""
    shortest = min(len(row) for row in rows) - 1
    if shortest <= 0:
        return 0
    starts = torch.stack([torch.as_tensor(row[:shortest]) for row in rows])
    differ = (starts != starts[0]).any(0).nonzero()
    return int(differ[0]) if len(differ) else shortest


def cache_with_room(config, *, room: int) -> Cache:
    """An empty cache whose layers keep ``room`` free positions after whatever they first hold."""
    layers = config.get_text_config(decoder=True).num_hidden_layers
    return Cache(layers=[RoomyLayer(room) for _ in range(layers)])


class RoomyLayer(DynamicLayer):
    """A cache layer that writes each step's keys and values into room kept free after the last ones.

    transformers' own layer concatenates at every step, copying the whole cache of every row: on the CPU, for a batch
    of 8 with a few hundred tokens each, that copy costs a good part of the step. Here the keys and values are views
    on a buffer that is only reallocated, with ``room`` free positions again, when a step does not fit or after
    something replaced them (``batch_select_indices`` copies).
    """

    def __init__(self, room: int):
        super().__init__()
        self.room = room
        self.buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.keys.shape[-2] if self.keys.numel() else 0
        end = length + key_states.shape[-2]
        buffers = self.buffers
        if (
            buffers is None
            or buffers[0].shape[-2] < end
            or buffers[0].shape[0] != key_states.shape[0]
            or (length and self.keys.data_ptr() != buffers[0].data_ptr())
        ):
            shape = (*key_states.shape[:2], end + self.room, key_states.shape[-1])
            buffers = (key_states.new_empty(shape), value_states.new_empty(shape))
            if length:
                buffers[0][..., :length, :] = self.keys
                buffers[1][..., :length, :] = self.values
            self.buffers = buffers
        buffers[0][..., length:end, :] = key_states
        buffers[1][..., length:end, :] = value_states
        self.keys, self.values = buffers[0][..., :end, :], buffers[1][..., :end, :]
        return self.keys, self.values


class PackedLinear(torch.nn.Module):
    """A linear layer whose weight oneDNN has laid out for its own kernels once, when the model is loaded."""

    def __init__(self, linear: torch.nn.Linear, rows: int = 8):
        super().__init__()
        # ``rows``: the batch size the layout is tuned for; any number of rows may be multiplied.
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows)
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x):
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def pack_output_layer(model) -> bool:
    """Replace a float32 model's output layer on the CPU by a ``PackedLinear``; say whether it was.

    The output layer is the largest product of a decode step (49,152 x 576 for the bundled model, a fifth of its
    weights). For a lockstep batch of 8 rows MKL's float32 product takes about 8.5 ms on it, oneDNN with the weight
    prepacked about 3.3 ms; one row takes the same either way (2-core Xeon). A model whose output layer shares its
    weight with the input embeddings keeps that weight for the embeddings: the packed copy costs the layer's size
    again in memory (113 MB for the bundled model).
    """
    layer = model.get_output_embeddings()
    if model.device.type != "cpu" or model.dtype != torch.float32 or type(layer) is not torch.nn.Linear:
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        packed = PackedLinear(layer)
    except (AttributeError, RuntimeError):  # a torch build without these oneDNN operators
        return False
    model.set_output_embeddings(packed)
    return True
