"""Shard orchestration with a fake backend: chunks, resume, no duplicates, retries, errors."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from entropy_sentinel.generate.backends import GENERATION_COLUMNS, error_row
from entropy_sentinel.generate.shard import (
    completed_parts,
    parts_dir,
    prefer_retries,
    run_retry,
    run_shard,
    shard_items,
    truncated_ids,
)
from entropy_sentinel.provenance import read_provenance


class FakeBackend:
    """Answers item i with i % 5 tokens; items whose id ends in '7' hit the budget."""

    def __init__(self, fail_after=None, fail_items=(), budget=4):
        self.fail_after, self.fail_items, self.budget = fail_after, set(fail_items), budget
        self.seen: list[str] = []

    def render_prompt(self, messages):
        return messages[0]["content"]

    def stream(self, prompts):
        for n, item_id in enumerate(sorted(prompts, reverse=True)):
            if self.fail_after is not None and n >= self.fail_after:
                raise RuntimeError("killed")
            self.seen.append(item_id)
            if item_id in self.fail_items:
                yield error_row(item_id, "bad prompt")
                continue
            truncated = item_id.endswith("7")
            length = self.budget if truncated else int(item_id[1:]) % 3 + 1
            yield {
                **dict.fromkeys(GENERATION_COLUMNS),
                "item_id": item_id,
                "prompt_tokens": len(prompts[item_id]),
                "response": "x" * length,
                "token_ids": list(range(length)),
                "n_tokens": length,
                "finish_reason": "length" if truncated else "stop",
                "logprobs_mode": "raw",
            }


@pytest.fixture()
def bench():
    return pd.DataFrame({"item_id": [f"i{n:02d}" for n in range(20)], "question": ["q"] * 20})


def _shard(backend, bench, out, **kw):
    args = dict(shard=0, n_shards=1, shard_size=20, chunk_size=3, prompt_style="raw")
    args["provenance"] = {"p": 1}
    return run_shard(backend=backend, benchmark=bench, output=out, **{**args, **kw})


def test_shard_written_in_item_order_with_provenance(bench, tmp_path):
    out = tmp_path / "shard-0.parquet"
    _shard(FakeBackend(), bench, out)
    rows = pd.read_parquet(out)
    assert list(rows["item_id"]) == list(bench["item_id"])
    assert list(rows.columns) == list(GENERATION_COLUMNS)
    assert read_provenance(out)["p"] == 1 and not parts_dir(out).exists()


def test_resume_after_a_crash_generates_only_the_rest(bench, tmp_path):
    out = tmp_path / "shard-0.parquet"
    with pytest.raises(RuntimeError, match="killed"):
        _shard(FakeBackend(fail_after=7), bench, out)
    committed = completed_parts(parts_dir(out))
    assert len(committed) == 7  # the 7 finished rows, errors not invented for the others
    (parts_dir(out) / ".chunk-00009.parquet.tmp").write_bytes(b"torn")  # a killed write
    second = FakeBackend()
    _shard(second, bench, out)
    assert len(second.seen) == 13 and not set(second.seen) & set(committed["item_id"])
    rows = pd.read_parquet(out)
    assert rows["item_id"].is_unique and len(rows) == 20
    clean = tmp_path / "clean" / "shard-0.parquet"
    _shard(FakeBackend(), bench, clean)
    pd.testing.assert_frame_equal(rows, pd.read_parquet(clean))


def test_duplicate_commits_keep_the_first(bench, tmp_path):
    out = tmp_path / "shard-0.parquet"
    with pytest.raises(RuntimeError):
        _shard(FakeBackend(fail_after=4), bench, out)
    parts = parts_dir(out)
    first = sorted(parts.glob("chunk-*.parquet"))[0]
    (parts / "chunk-00050.parquet").write_bytes(first.read_bytes())
    _shard(FakeBackend(), bench, out)
    assert pd.read_parquet(out)["item_id"].is_unique


def test_error_rows_are_kept_and_retried_on_rerun(bench, tmp_path):
    out = tmp_path / "shard-0.parquet"
    with pytest.raises(RuntimeError, match="killed"):
        _shard(FakeBackend(fail_items={"i19", "i18"}, fail_after=5), bench, out)
    second = FakeBackend(fail_items={"i19"})
    _shard(second, bench, out)
    assert "i18" in second.seen and "i17" not in second.seen
    rows = pd.read_parquet(out).set_index("item_id")
    assert rows["error"].notna().sum() == 1 and rows.loc["i19", "error"] == "bad prompt"
    assert rows.loc["i18", "finish_reason"] == "stop"


def test_shards_partition_the_items(bench):
    shards = [shard_items(bench, s, 3, 7)["item_id"] for s in range(3)]
    assert sorted(sum(map(list, shards), [])) == list(bench["item_id"])


def test_retry_regenerates_only_truncated(bench, tmp_path):
    shard = tmp_path / "shard-0.parquet"
    _shard(FakeBackend(), bench, shard)
    assert truncated_ids([shard]) == ["i07", "i17"]
    retry = tmp_path / "retry-0.parquet"
    backend = FakeBackend(budget=9)
    run_retry(
        backend=backend,
        benchmark=bench,
        shard_file=shard,
        chunk_size=3,
        prompt_style="raw",
        output=retry,
        provenance={},
    )
    rows = pd.read_parquet(retry)
    assert sorted(backend.seen) == ["i07", "i17"] and list(rows["n_tokens"]) == [9, 9]
    assert read_provenance(retry)["retry_of"] == str(shard)
    merged = prefer_retries(pd.read_parquet(shard), rows)
    assert list(merged["item_id"]) == list(bench["item_id"])
    assert merged.set_index("item_id").loc["i17", "n_tokens"] == 9
    assert merged["retried"].sum() == 2 and set(merged["first_finish_reason"]) == {"stop", "length"}


def test_a_torn_chunk_loses_only_its_items(bench, tmp_path, caplog):
    """A chunk file cut short (a copy interrupted, a disk fault) costs its own items, not the
    shard: the rerun regenerates them and keeps the other chunks."""
    out = tmp_path / "shard-0.parquet"
    with pytest.raises(RuntimeError, match="killed"):
        _shard(FakeBackend(fail_after=7), bench, out)
    chunks = sorted(parts_dir(out).glob("chunk-*.parquet"))
    torn_items = set(pd.read_parquet(chunks[0])["item_id"])
    chunks[0].write_bytes(chunks[0].read_bytes()[:40])
    second = FakeBackend()
    _shard(second, bench, out)
    assert set(second.seen) & torn_items == torn_items and len(second.seen) == 13 + len(torn_items)
    assert len(pd.read_parquet(out)) == 20
    assert f"{chunks[0]} is unreadable" in caplog.text


def test_parts_made_with_other_settings_are_generated_again(bench, tmp_path, caplog):
    """A job killed, the config edited, the job rerun: no row of the old settings survives."""
    out = tmp_path / "shard-0.parquet"
    old = {"generation_settings": {"temperature": 0.5}}
    with pytest.raises(RuntimeError, match="killed"):
        _shard(FakeBackend(fail_after=7), bench, out, provenance=old)
    again = FakeBackend()
    new = {"generation_settings": {"temperature": 1.0}}
    with caplog.at_level("WARNING"):
        _shard(again, bench, out, provenance=new)
    assert len(again.seen) == 20  # nothing reused
    assert "made with other generation_settings" in caplog.text
    assert read_provenance(out)["generation_settings"] == {"temperature": 1.0}


def test_a_deleted_shard_made_the_same_way_is_linked_back_not_generated(bench, tmp_path):
    """Snakemake deletes a job's output before rerunning it (an upstream table rebuilt with the
    same content, say): the finished generation comes back from .store, nothing is generated."""
    out = tmp_path / "shard-0.parquet"
    first = _shard(FakeBackend(), bench, out)
    out.unlink()
    again = FakeBackend()
    pd.testing.assert_frame_equal(_shard(again, bench, out), first)
    assert (
        again.seen == [] and pd.read_parquet(out)["item_id"].tolist() == first["item_id"].tolist()
    )
    out.unlink()  # other settings: generated again, and the store keeps only the newest
    other = FakeBackend()
    _shard(other, bench, out, provenance={"generation_settings": {"t": 1}})
    assert len(other.seen) == 20 and len(list((tmp_path / ".store").iterdir())) == 1
    assert os.path.samefile(out, next((tmp_path / ".store").iterdir()))  # a link: no extra disk
