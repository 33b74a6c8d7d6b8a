"""Dialogue generation throughput: one dialogue at a time against lockstep batches, side by side in one process.

    python bench/generation.py [--dialogues 8] [--turns 4] [--batch 8] [--max-new-tokens 48] [--dtype auto]
    python bench/generation.py --random-weights bench/configs/llama-1b.json   # a larger architecture, e.g. on a GPU

The last line printed is one JSON object: sequential_dialogues_per_min, batched_dialogues_per_min, ratio,
tokens_per_s (batched), device, dtype, model. The dtype is the backend's automatic choice unless given: bfloat16 on
CUDA and on CPUs with AMX, float32 elsewhere (``generation.backends.local.auto_dtype``); both sides run in the same one.
"""

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psyroom_admin.settings")

import django  # noqa: E402

django.setup()

import torch  # noqa: E402

from generation.backends.base import SamplingParams  # noqa: E402
from generation.backends.local import BUNDLED, TransformersBackend, auto_dtype  # noqa: E402
from generation.pipelines.dialogue import generate_dialogues  # noqa: E402


def random_weights_backend(config_path: Path, device: str, dtype: str) -> TransformersBackend:
    """A model of the given architecture with random weights and the bundled model's tokenizer.

    Throughput does not depend on the weight values, so this measures a large model without its weights.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    backend = TransformersBackend(name="tokenizer", path=f"bundled:{next(iter(BUNDLED))}", device="cpu")
    config = AutoConfig.for_model(**json.loads(config_path.read_text()))
    config.vocab_size = len(backend.tokenizer)
    # The bundled backend with its model swapped for the random one.
    backend.name = f"random:{config_path.stem}"
    backend.device, backend.dtype = device, dtype
    backend.model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype)).to(device).eval()
    return backend


def run(backend, *, chunks: list[list[int]], turns: int, sampling: SamplingParams) -> tuple[float, int, int]:
    start = time.perf_counter()
    tokens = done = 0
    for chunk in chunks:
        # A seed per chunk, as a run's chunks get (``services._sampling``): one at a time, each dialogue is its own.
        result = generate_dialogues(
            backend,
            indexes=chunk,
            turns=turns,
            emotion="Self-imposed pressure",
            category="Anxiety",
            situation="Your situation: exams are coming and you feel you must get top marks.",
            sampling=replace(sampling, seed=chunk[0]),
        )
        tokens += result.completion_tokens
        done += sum(1 for d in result.dialogues if d.failure is None)
    if backend.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, tokens, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=8)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="auto, float32 or bfloat16")
    parser.add_argument("--random-weights", type=Path, metavar="CONFIG", help="a transformers config.json")
    args = parser.parse_args()

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    dtype = auto_dtype(device) if args.dtype == "auto" else args.dtype
    if args.random_weights:
        backend = random_weights_backend(args.random_weights, device, dtype)
    else:
        backend = TransformersBackend(
            name="smollm2-135m-instruct", path="bundled:smollm2-135m-instruct", device=device, dtype=dtype
        )
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.9, repetition_penalty=1.2)
    indexes = list(range(args.dialogues))

    run(backend, chunks=[indexes[:2]], turns=2, sampling=sampling)  # warm-up: kernels, caches, allocator
    seq_s, seq_tokens, seq_done = run(backend, chunks=[[i] for i in indexes], turns=args.turns, sampling=sampling)
    batches = [indexes[i : i + args.batch] for i in range(0, len(indexes), args.batch)]
    bat_s, bat_tokens, bat_done = run(backend, chunks=batches, turns=args.turns, sampling=sampling)

    print(f"sequential: {seq_done} dialogues, {seq_tokens} tokens in {seq_s:.1f} s")
    print(f"batched ({args.batch}): {bat_done} dialogues, {bat_tokens} tokens in {bat_s:.1f} s")
    sequential = 60 * seq_done / seq_s
    batched = 60 * bat_done / bat_s
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    print(
        json.dumps(
            {
                "sequential_dialogues_per_min": round(sequential, 2),
                "batched_dialogues_per_min": round(batched, 2),
                "ratio": round(batched / sequential, 2),
                "tokens_per_s": round(bat_tokens / bat_s, 1),
                "sequential_tokens_per_s": round(seq_tokens / seq_s, 1),
                "dialogues": args.dialogues,
                "turns": args.turns,
                "batch": args.batch,
                "max_new_tokens": args.max_new_tokens,
                "device": name,
                "dtype": backend.dtype,
                "model": backend.name,
            }
        )
    )


if __name__ == "__main__":
    main()
