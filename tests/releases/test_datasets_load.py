"""A release's Parquet files as a training team loads them: ``datasets.load_dataset("parquet", data_files=...)``.

``datasets`` is not a dependency: no release of it fits the pins of requirements.txt. pip's resolver, given those
pins as constraints, rejects every release from 5.2.0 down to 1.1.2 (of those checked one by one: 5.1.0 and 5.2.0
need pyarrow>=24; 2.14.7, 2.21.0, 3.6.0, 4.8.5, 5.0.0 and 5.0.1 cap fsspec below 2026.9.0; 1.18.4 and 2.0.0 need
huggingface-hub<1; 1.1.2 needs tqdm<4.50) and settles on 1.1.1,
which fails to import with pyarrow 22 (``pyarrow.PyExtensionType`` is gone). The test runs wherever ``datasets`` is
installed and is skipped here; ``pyarrow.parquet`` reads the same files in test_parquet_dedup_card.py.
"""

import json

import pytest

from releases import services
from releases.models import Release
from tests import factories

from .helpers import rows

pytestmark = pytest.mark.django_db


def test_load_dataset_reads_each_split_with_the_jsonl_rows(taxonomy, build, tmp_path):
    datasets = pytest.importorskip("datasets")
    for i in range(6):
        factories.make_candidate(content=factories.dialogue_content(prefix=f"Load {i}. "), status="approved")
    release = build({"formats": ["sft", "sharegpt"], "splits": {"train": 0.5, "validation": 0.5, "test": 0, "seed": 2}})
    assert release.status == Release.Status.READY, release.error
    folder = services.release_dir(release)
    for fmt in ("sft", "sharegpt"):
        files = {split: str(folder / fmt / f"{split}.parquet") for split in ("train", "validation")}
        loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
        assert set(loaded) == {"train", "validation"}
        for split in files:
            expected = rows(release, f"{fmt}/{split}.jsonl")
            got = loaded[split].to_list()
            assert len(got) == len(expected) > 0
            for row, want in zip(got, expected, strict=True):
                assert json.loads(row["metadata"]) == want["metadata"]
                column = "messages" if fmt == "sft" else "conversations"
                assert row[column] == want[column]
