"""Benchmark registry, loaders, splits and prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from entropy_sentinel.data import (
    REGISTRY,
    STEM_TEN,
    build_messages,
    get_spec,
    load_benchmark,
    make_split,
)
from entropy_sentinel.data.schema import ANSWER_TYPES, COLUMNS, validate_frame
from entropy_sentinel.data.synthetic import DOMAINS

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "benchmarks"

EXPECTED = {  # folder: (registry name, extra settings, items after filters)
    "gsm8k": ("gsm8k", {}, 1319),
    "svamp": ("svamp", {}, 1000),
    "math": ("math", {}, 5000),
    "math500": ("math500", {}, 500),
    "gsm_symbolic": ("gsm_symbolic", {"variant": "p2"}, 2500),
    "theoremqa": ("theoremqa", {}, 747),
    "olympiadbench": ("olympiadbench", {}, 675),
    "scibench": ("scibench", {}, 580),
    "matscibench": ("matscibench", {}, 1024),
    "gpqa": ("gpqa", {}, 198),
    "aime24": ("aime24", {}, 30),
    "amc23": ("amc23", {}, 40),
    "minerva_math": ("minerva_math", {}, 272),
}


def test_registry_covers_the_ten_and_the_extras():
    assert set(STEM_TEN) | {"aime24", "amc23", "minerva_math"} <= set(REGISTRY)
    for spec in REGISTRY.values():
        assert spec.hub_id and spec.hub_split and spec.answer_type in ANSWER_TYPES
    assert get_spec("mathhendrycks").name == "math500"
    with pytest.raises(KeyError):
        get_spec("nope")


@pytest.mark.shared
@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_local_files_load(folder):
    if not (SHARED / folder).exists():
        pytest.skip(f"{SHARED / folder} is absent")
    name, extra, count = EXPECTED[folder]
    frame = load_benchmark(name, {"path": str(SHARED / folder), **extra})
    validate_frame(frame)
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == count
    assert frame["item_id"].is_unique
    assert frame["question"].str.strip().astype(bool).all()
    assert frame["reference"].str.strip().astype(bool).all()
    again = load_benchmark(name, {"path": str(SHARED / folder), **extra})
    assert list(again["item_id"]) == list(frame["item_id"])


@pytest.mark.shared
def test_filters_are_counted():
    if not (SHARED / "theoremqa").exists():
        pytest.skip("shared benchmarks absent")
    theoremqa = load_benchmark("theoremqa", {"path": str(SHARED / "theoremqa")})
    assert theoremqa.attrs["skipped"] == {"needs an image": 53}
    matsci = load_benchmark("matscibench", {"path": str(SHARED / "matscibench" / "qa.csv")})
    assert matsci.attrs["skipped"]["needs an image"] == 315


@pytest.mark.shared
def test_dataset_ids_are_used():
    if not (SHARED / "math500").exists():
        pytest.skip("shared benchmarks absent")
    frame = load_benchmark("math500", {"path": str(SHARED / "math500")})
    assert frame["item_id"].iloc[0] == "test/precalculus/807.json"


@pytest.mark.shared
def test_subsampling_is_seeded():
    if not (SHARED / "gsm8k").exists():
        pytest.skip("shared benchmarks absent")
    path = str(SHARED / "gsm8k" / "test.jsonl")
    a = load_benchmark("gsm8k", {"path": path, "limit": 50, "seed": 3})
    b = load_benchmark("gsm8k", {"path": path, "limit": 50, "seed": 3})
    c = load_benchmark("gsm8k", {"path": path, "limit": 50, "seed": 4})
    assert len(a) == 50 and list(a["item_id"]) == list(b["item_id"])
    assert set(a["item_id"]) != set(c["item_id"])


@pytest.mark.shared
def test_gpqa_modes():
    if not (SHARED / "gpqa").exists():
        pytest.skip("shared benchmarks absent")
    path = str(SHARED / "gpqa")
    open_ = load_benchmark("gpqa", {"path": path, "gpqa_mode": "open"})
    mcq = load_benchmark("gpqa", {"path": path, "gpqa_mode": "mcq", "seed": 1})
    assert (open_["answer_type"] == "text").all() and (mcq["answer_type"] == "option").all()
    assert "A) " not in open_["question"].iloc[0]
    row = mcq.iloc[0]
    meta = json.loads(row["metadata"])
    assert meta["options"][row["reference"]] == meta["correct_text"]
    assert "\nA) " in row["question"] and "\nD) " in row["question"]
    letters = set(mcq["reference"])
    assert letters == set("ABCD")  # the shuffle spreads the correct letter


def test_bad_rows_are_skipped_not_fatal(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [
        {"q": "What is 1+1?", "a": "2"},
        {"q": "", "a": "3"},
        {"q": "What is 2+2?", "a": ""},
        {"q": "What is 3+3?", "a": None},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    settings = {"source": "file", "path": str(path), "question_field": "q", "answer_field": "a"}
    frame = load_benchmark("mine", settings | {"answer_type": "integer"})
    assert len(frame) == 1 and frame["reference"].iloc[0] == "2"
    assert sum(frame.attrs["skipped"].values()) == 4


def test_user_csv_and_parquet(tmp_path):
    import pandas as pd

    data = pd.DataFrame({"problem": ["Compute 2*3.", "Compute 5-1."], "sol": ["6", "4"]})
    data.to_csv(tmp_path / "x.csv", index=False)
    data.to_parquet(tmp_path / "x.parquet")
    for name in ("x.csv", "x.parquet"):
        settings = {
            "source": "file",
            "path": str(tmp_path / name),
            "question_field": "problem",
            "answer_field": "sol",
            "answer_type": "integer",
        }
        assert list(load_benchmark("x", settings)["reference"]) == ["6", "4"]


def test_synthetic_source():
    frame = load_benchmark("demo", {"source": "synthetic", "n_per_domain": 3, "seed": 0})
    assert len(frame) == 3 * len(DOMAINS) and set(frame["benchmark"]) == {"demo"}


def test_split_is_deterministic_and_order_free():
    ids = [f"item-{i}" for i in range(100)]
    split = make_split(ids, test_fraction=0.2, seed=42)
    assert len(split["test"]) == 20 and len(split["train"]) == 80
    assert not set(split["test"]) & set(split["train"])
    assert make_split(list(reversed(ids)), 0.2, 42) == split
    assert make_split(ids, 0.2, 43) != split
    json.dumps(split)


def test_prompts():
    assert build_messages("What is 2+2?", "raw") == [{"role": "user", "content": "What is 2+2?"}]
    boxed = build_messages("What is 2+2?", "boxed")[0]["content"]
    assert boxed.startswith("What is 2+2?") and "\\boxed{}" in boxed
    with pytest.raises(ValueError):
        build_messages("x", "fancy")


def test_stratified_split_gives_every_stratum_its_share():
    ids = [
        f"{d}-{i:03d}" for d in ("easy", "hard", "rare") for i in range(50 if d != "rare" else 5)
    ]
    strata = [i.split("-")[0] for i in ids]
    split = make_split(ids, test_fraction=0.2, seed=7, strata=strata)
    test_per_stratum = {
        d: sum(i.startswith(d) for i in split["test"]) for d in ("easy", "hard", "rare")
    }
    assert test_per_stratum == {"easy": 10, "hard": 10, "rare": 1}
    assert set(split["train"]) | set(split["test"]) == set(ids)
    assert not set(split["train"]) & set(split["test"])
    shuffled = list(zip(ids, strata, strict=True))[::-1]
    again = make_split([i for i, _ in shuffled], 0.2, 7, strata=[s for _, s in shuffled])
    assert again == split


FILE_SETTINGS = {"source": "file", "question_field": "q", "answer_field": "a"}


def test_bytes_that_are_not_utf8_skip_only_their_row(tmp_path):
    path = tmp_path / "mine.jsonl"
    good = [json.dumps({"q": f"What is {n}+{n}?", "a": str(2 * n)}).encode() for n in range(3)]
    bad = json.dumps({"q": "caf\u00e9 + 1?", "a": "2"}, ensure_ascii=False).encode()
    bad = bad.replace(b"\xc3\xa9", b"\xe9")  # Latin-1, not UTF-8
    path.write_bytes(b"\n".join([good[0], bad, good[1], b"[1, 2]", good[2]]) + b"\n")
    settings = FILE_SETTINGS | {"path": str(path), "answer_type": "integer"}
    frame = load_benchmark("mine", settings)
    assert list(frame["reference"]) == ["0", "2", "4"]  # every valid row is kept
    assert frame.attrs["skipped"] == {"not UTF-8": 1, "not a JSON object": 1}
    assert frame.attrs["skipped_rows"] == [
        f"{path}:2: not UTF-8 (byte 0xe9 at column 11)",
        f"{path}:4: not a JSON object",
    ]


def test_bad_rows_of_csv_and_json_files_are_named_by_place(tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_bytes(
        b'q,a\nWhat is 1+1?,2\nWhat is \xff?,3\n,4\n"What is\n2+2?",4\nx,y,z\nWhat is 3+3?,6\n'
    )
    frame = load_benchmark("m", FILE_SETTINGS | {"path": str(csv), "answer_type": "integer"})
    assert list(frame["reference"]) == ["2", "4", "6"]  # a quoted field may span lines
    assert frame.attrs["skipped_rows"] == [
        f"{csv}:3: not UTF-8",
        f"{csv}:4: empty question",
        f"{csv}:7: 3 fields, the header has 2",
    ]
    data = tmp_path / "mine.json"
    data.write_text(json.dumps([{"q": "What is 1+1?", "a": "2"}, "text", {"q": "x", "a": "y"}]))
    frame = load_benchmark("m", FILE_SETTINGS | {"path": str(data), "answer_type": "integer"})
    assert frame.attrs["skipped_rows"] == [f"{data}:item 2: not a JSON object"]


def test_a_json_file_that_does_not_parse_names_file_line_and_column(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text('[{"q": "What is 1+1?", "a": "2"},\n {"q": "x" "a": "y"}]')
    with pytest.raises(ValueError, match=rf"^{path}:2:12: not valid JSON .*write it as \.jsonl"):
        load_benchmark("m", FILE_SETTINGS | {"path": str(path), "answer_type": "integer"})


@settings(max_examples=150, deadline=None, database=None)
@given(
    lines=st.lists(
        st.one_of(
            st.binary(max_size=30),
            st.builds(
                lambda q, a: json.dumps({"q": q, "a": a}).encode(),
                st.text(max_size=12),
                st.one_of(st.text(max_size=5), st.integers(), st.none(), st.lists(st.integers())),
            ),
        ),
        max_size=12,
    ),
    suffix=st.sampled_from([".jsonl", ".csv"]),
)
def test_any_bytes_lose_only_their_own_rows(tmp_path_factory, lines, suffix):
    """Whatever a line holds, the loader keeps the good rows and names each skipped one."""
    path = tmp_path_factory.mktemp("fuzz") / f"data{suffix}"
    header = b"q,a\n" if suffix == ".csv" else b""
    path.write_bytes(header + b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    frame = load_benchmark("m", FILE_SETTINGS | {"path": str(path), "answer_type": "expression"})
    assert len(frame) + sum(frame.attrs["skipped"].values()) >= 1 or not any(
        line.strip() for line in lines
    )
    assert len(frame.attrs["skipped_rows"]) == sum(frame.attrs["skipped"].values())
    assert all(row.startswith(f"{path}:") for row in frame.attrs["skipped_rows"])


def write_math500(folder: Path, levels: dict[int, int]) -> None:
    folder.mkdir()
    rows = [
        {
            "problem": f"What is {level} + {n}?",
            "answer": str(level + n),
            "subject": "Algebra",
            "level": level,
            "unique_id": f"test/algebra/{level}-{n}.json",
        }
        for level, count in levels.items()
        for n in range(count)
    ]
    (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_slices_by_a_record_field_with_items_per_slice(tmp_path):
    """The testbed's slices: MATH-500 by level, the first N of each, or the next N after them."""
    write_math500(tmp_path / "math500", {1: 5, 2: 6, 3: 2})
    settings = {"source": "registry", "path": str(tmp_path / "math500"), "domain_field": "level"}
    first = load_benchmark("math500", {**settings, "domains": [1, "2"], "per_domain": 3})
    assert first.groupby("domain").size().to_dict() == {"math500/level=1": 3, "math500/level=2": 3}
    assert first["question"].iloc[0] == "What is 1 + 0?"
    rest = load_benchmark("math500", {**settings, "per_domain": 3, "per_domain_skip": 3})
    assert rest.groupby("domain").size().to_dict() == {"math500/level=1": 2, "math500/level=2": 3}
    assert not set(first["item_id"]) & set(rest["item_id"])
    with pytest.raises(ValueError, match=r"\['7'\] are not domains.*math500/level=1"):
        load_benchmark("math500", {**settings, "domains": ["7"]})
    with pytest.raises(ValueError, match="per_domain_skip: 6 leaves no items.*has 6"):
        load_benchmark("math500", {**settings, "per_domain_skip": 6})


def test_a_slice_field_missing_in_a_row_skips_that_row(tmp_path):
    write_math500(tmp_path / "math500", {1: 2})
    frame = load_benchmark("math500", {"path": str(tmp_path / "math500"), "domain_field": "grade"})
    assert frame.empty and frame.attrs["skipped"] == {"no grade": 2}


def test_the_plan_counts_items_per_slice(tmp_path):
    from entropy_sentinel.config.plan import WorkflowPlan

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["benchmarks"]["levels"] = {
        "source": "registry",
        "name": "math500",
        "domain_field": "level",
        "domains": [1, 2, 3],
        "per_domain": 40,
    }
    assert WorkflowPlan(config).expected_items("levels") == 120
