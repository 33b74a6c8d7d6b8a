"""Dialogue generation throughput: one dialogue at a time against lockstep batches, side by side in one process.

    python bench/generation.py [--dialogues 8] [--turns 4] [--batch 8] [--max-new-tokens 48] [--dtype auto]
    python bench/generation.py --random-weights bench/configs/llama-1b.json   # a larger architecture, e.g. on a GPU
    python bench/generation.py --backend openai --base-url http://gpu-1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct \
        --dialogues 64 --batch 32            # a model server (vLLM): --batch requests in flight at once

With ``--backend openai`` the dialogues go through ``OpenAIBackend`` (the key, if the server wants one, from
``--api-key-env``); the server batches what is in flight itself, so ``--batch`` is how many requests the worker keeps
in flight; device and dtype are the server's (the JSON says ``server``).

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

from generation.backends.base import SamplingParams  # noqa: E402
from generation.backends.server import OpenAIBackend  # noqa: E402
from generation.pipelines.dialogue import generate_dialogues  # noqa: E402


def random_weights_backend(config_path: Path, device: str, dtype: str):
    """A model of the given architecture with random weights and the bundled model's tokenizer.

    Throughput does not depend on the weight values, so this measures a large model without its weights.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from generation.backends.local import BUNDLED, TransformersBackend

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
    if getattr(backend, "device", "").startswith("cuda"):
        import torch

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
    parser.add_argument("--backend", choices=("transformers", "openai"), default="transformers")
    parser.add_argument("--base-url", help="the model server's URL up to /v1 (--backend openai)")
    parser.add_argument("--model", help="the model name the server knows (--backend openai)")
    parser.add_argument("--api-key-env", help="the environment variable holding the server's key (--backend openai)")
    args = parser.parse_args()

    if args.backend == "openai":
        if not (args.base_url and args.model):
            parser.error("--backend openai needs --base-url and --model")
        key = os.environ.get(args.api_key_env, "") if args.api_key_env else ""
        backend = OpenAIBackend(
            name="server", model=args.model, base_url=args.base_url, api_key=key, batch_size=args.batch
        )
        device, dtype = "server", "server"
    else:
        import torch

        from generation.backends.local import TransformersBackend, auto_dtype

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
    if device == "server":
        name = f"server {args.base_url} ({backend.runtime.get('server_model', args.model)})"
    else:
        import torch

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
                "dtype": dtype,
                "model": backend.name,
            }
        )
    )


if __name__ == "__main__":
    main()
