"""The rows of each format, from one candidate's approved revision, and the writer that streams them to a file.

Rows are JSON objects with sorted keys, one a line, UTF-8, with no timestamps: the same candidates give the same
bytes. The SFT and GRPO rows are the ones ``annotations.exports`` writes (their row builders are reused here).
"""

import difflib
import hashlib
import unicodedata
from pathlib import Path

import orjson

from annotations.exports import questions as question_export
from annotations.exports import sft as sft_export
from generation.training import training_system_prompt

SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


def dumps_bytes(row: dict) -> bytes:
    """A row as JSON: keys sorted, no spaces, UTF-8 (orjson: about ten times ``json.dumps``)."""
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)


def dumps(row: dict) -> str:
    return dumps_bytes(row).decode("utf-8")


def normalize(text: str) -> str:
    """Text as compared for duplicates: NFKC, case folded, runs of white space as one space."""
    # str.split() splits at the characters ``\s`` matches (str.isspace), and drops them at both ends: the same as
    # re.sub(r"\s+", " ", ...).strip(), in a fifth of the time.
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_hash(text: str) -> bytes:
    """The normalized text's sha256, as 32 bytes (a set of a million of them stays small)."""
    return normalized_hash(normalize(text))


def normalized_hash(normalized: str) -> bytes:
    """``text_hash`` of a text already normalized."""
    return hashlib.sha256(normalized.encode("utf-8")).digest()


def dialogue_text(content: dict) -> str:
    return "\n".join(f"{t['role']}: {t['text']}" for t in content.get("turns", []))


def question_text(content: dict) -> str:
    options = content.get("options") or {}
    listed = [f"{k}. {options[k]}" for k in sorted(options)] if isinstance(options, dict) else [str(options)]
    return "\n".join([str(content.get("question", "")), *listed])


def sft_row(*, candidate, revision, reviewer_ids: list[int]) -> dict:
    """Chat ``messages`` as TRL's SFTTrainer and OpenAI fine-tuning read them (what ``export_sft`` writes)."""
    return sft_export.sft_record(candidate=candidate, revision=revision, reviewer_ids=reviewer_ids)


def sharegpt_row(sft: dict) -> dict:
    """The same example as ShareGPT ``conversations`` (``from``: system, human, gpt)."""
    conversations = [{"from": SHAREGPT_FROM[m["role"]], "value": m["content"]} for m in sft["messages"]]
    return {"conversations": conversations, "metadata": sft["metadata"]}


def dpo_rows(*, candidate, revision, original, max_similarity: float) -> tuple[list[dict], dict[str, int]]:
    """Preference pairs from the counselor turns people changed, in TRL DPOTrainer's conversational format.

    ``prompt`` is the system message and the approved dialogue up to the edited turn, ``chosen`` the approved
    (clinician's) text, ``rejected`` the model's (revision 0). Only a dialogue whose turns still line up with the
    model's (same number, same roles) gives pairs; a pair whose sides are equal after normalization, or more alike
    than ``max_similarity`` (difflib's ratio), is dropped. Returns the rows and the drops counted by reason.
    """
    dropped: dict[str, int] = {}
    if original is None or revision.number == 0:
        return [], dropped
    turns, model_turns = revision.content.get("turns", []), original.content.get("turns", [])
    if len(turns) != len(model_turns) or any(a["role"] != b["role"] for a, b in zip(turns, model_turns, strict=True)):
        dropped["dpo_turns_realigned"] = 1
        return [], dropped
    rows = []
    for index, (turn, model_turn) in enumerate(zip(turns, model_turns, strict=True)):
        if turn["role"] != "counselor" or turn["text"] == model_turn["text"]:
            continue
        chosen, rejected = normalize(turn["text"]), normalize(model_turn["text"])
        if chosen == rejected:
            dropped["dpo_identical"] = dropped.get("dpo_identical", 0) + 1
            continue
        matcher = difflib.SequenceMatcher(None, chosen, rejected, autojunk=False)
        # quick_ratio() is an upper bound of ratio(), in linear time: below the bar, the sides are far enough apart.
        if matcher.quick_ratio() > max_similarity and matcher.ratio() > max_similarity:
            dropped["dpo_near_identical"] = dropped.get("dpo_near_identical", 0) + 1
            continue
        prompt = [{"role": "system", "content": training_system_prompt(language=candidate.language)}]
        prompt += [{"role": sft_export.ROLE_TO_CHAT[t["role"]], "content": t["text"]} for t in turns[:index]]
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": turn["text"]}],
                "rejected": [{"role": "assistant", "content": model_turn["text"]}],
                "metadata": {
                    "candidate_id": candidate.pk,
                    "turn": index,
                    "revision": revision.number,
                    "sub_emotion": candidate.sub_emotion.key if candidate.sub_emotion else None,
                    "language": candidate.language,
                },
            }
        )
    return rows, dropped


def question_target(content: dict) -> str | None:
    """The format a question trains in: hard ones with a closed answer in GRPO, easy ones in reasoning SFT."""
    if content.get("difficulty") == "hard" and content.get("question_type") != "open":
        return "grpo"
    if content.get("difficulty") == "easy":
        return "reasoning-sft"
    return None


def grpo_row(candidate) -> dict:
    """Prompt and verified answer (what ``export_questions`` writes to grpo.jsonl); ``candidate.content`` must be
    the approved revision's."""
    return question_export.grpo_record(candidate)


def reasoning_sft_row(candidate, best: dict) -> dict:
    """``<think>`` reasoning, then the answer (what ``export_questions`` writes to sft.jsonl)."""
    return question_export.sft_record(candidate, best)


def best_rationale(candidate) -> dict | None:
    return question_export.best_rationale(candidate)


class JsonlWriter:
    """One file of a release, written a line at a time: its rows, bytes and sha256 counted as it goes."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rows = 0
        self.bytes = 0
        self._digest = hashlib.sha256()
        self._file = path.open("wb")

    def write(self, row: dict) -> None:
        data = dumps_bytes(row) + b"\n"
        self._file.write(data)
        self._digest.update(data)
        self.rows += 1
        self.bytes += len(data)

    def close(self) -> None:
        self._file.close()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


# --- Parquet -----------------------------------------------------------------------------------------------------

# One schema per format, fixed here rather than inferred from the rows, so that every file of a format has the same
# columns whatever its first rows hold. ``metadata`` is a JSON string (the JSONL row's, with sorted keys): its shape
# varies (a source is an object or null), and a JSON column reads the same in every Parquet reader.
PARQUET_COLUMNS: dict[str, tuple[str, ...]] = {
    "sft": ("messages", "metadata"),
    "sharegpt": ("conversations", "metadata"),
    "dpo": ("prompt", "chosen", "rejected", "metadata"),
    "grpo": ("prompt", "answer", "metadata"),
    "reasoning-sft": ("messages", "metadata"),
    "courses": ("messages", "metadata"),
    "plans": ("instruction", "input", "output", "metadata"),
}


def parquet_schema(fmt: str):
    """The Parquet schema of a format. pyarrow is imported here, not with the module: the web and API processes
    import this module and never write Parquet (pyarrow costs about 60 MB of memory in each)."""
    import pyarrow as pa

    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    types = {
        "conversations": pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())])),
        "answer": pa.string(),
        "instruction": pa.string(),
        "input": pa.string(),
        "output": pa.string(),
        "metadata": pa.string(),
    }
    return pa.schema([(name, types.get(name, message)) for name in PARQUET_COLUMNS[fmt]])


ROW_GROUP = 2_000


def parquet_cell(column: str, value):
    """A JSONL row's value as its Parquet column holds it: lists of messages as they are, the rest as text (a
    string as itself, anything else as JSON)."""
    if column in ("messages", "conversations", "prompt", "chosen", "rejected"):
        return value
    return value if isinstance(value, str) else dumps(value)


class ParquetWriter:
    """One Parquet file of a release, written a row group at a time (``ROW_GROUP`` rows held, never more).

    The bytes depend only on the rows: the schema is fixed, the compression and options are named here, and
    pyarrow writes no time into the file (its ``created_by`` names the library's version, which requirements.txt
    pins). The sha256 is taken once the file is closed.
    """

    def __init__(self, path: Path, fmt: str):
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.schema = parquet_schema(fmt)
        self.rows = 0
        self.bytes = 0
        self.sha256 = ""
        self._columns: dict[str, list] = {name: [] for name in self.schema.names}
        self._buffered = 0
        self._writer = pq.ParquetWriter(
            path,
            self.schema,
            compression="zstd",
            compression_level=3,
            use_dictionary=True,
            write_statistics=True,
            write_page_index=False,
            store_schema=True,
        )

    def write(self, row: dict) -> None:
        for name, cells in self._columns.items():
            cells.append(parquet_cell(name, row[name]))
        self._buffered += 1
        if self._buffered >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        import pyarrow as pa

        batch = pa.RecordBatch.from_pydict(self._columns, schema=self.schema)
        self._writer.write_batch(batch, row_group_size=ROW_GROUP)
        self.rows += self._buffered
        self._columns = {name: [] for name in self.schema.names}
        self._buffered = 0

    def close(self) -> None:
        if self._writer is None:
            return
        try:
            self._flush()
        finally:
            self._writer.close()
            self._writer = None
        self.sha256, self.bytes = file_sha256(self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def file_sha256(path: Path) -> tuple[str, int]:
    """A file's sha256 and size, read a megabyte at a time."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
