"""The benchmark registry: where each benchmark lives and how its rows map to the schema.

One ``BenchmarkSpec`` per benchmark. The ten STEM benchmarks of the original study come
first, then the extras. ``local_files`` are glob patterns inside the benchmark's folder of
``shared/benchmarks`` (see its SOURCES.md); ``hub_*`` name the Hugging Face dataset used
when no local path is given.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchmarkSpec:
    """How to find and read one benchmark."""

    name: str
    hub_id: str
    hub_config: str | None
    hub_split: str
    question_field: str
    answer_field: str
    answer_type: str  # the default; the row parser may refine it per item
    local_format: str  # the row parser in ``loaders.ROW_PARSERS``
    local_files: tuple[str, ...] = ()
    id_field: str | None = None
    filters: tuple[str, ...] = ()
    rel_tol: float | None = None  # numeric tolerance of the benchmark's own protocol
    notes: str = ""


_SPECS = (
    BenchmarkSpec(
        name="gsm8k",
        hub_id="openai/gsm8k",
        hub_config="main",
        hub_split="test",
        question_field="question",
        answer_field="answer",
        answer_type="integer",
        local_format="gsm8k",
        local_files=("test.jsonl",),
        notes="answer is a worked solution ending '#### n'; the reference is n",
    ),
    BenchmarkSpec(
        name="gsm_symbolic",
        hub_id="apple/GSM-Symbolic",
        hub_config="p1",
        hub_split="test",
        question_field="question",
        answer_field="answer",
        answer_type="integer",
        local_format="gsm_symbolic",
        local_files=("generated_data/GSM_{variant}.jsonl", "GSM_{variant}.jsonl"),
        id_field="id",
        notes="original used p1; offline only p2 is published, other variants are "
        "instantiated from templates/ by gsm_symbolic.py",
    ),
    BenchmarkSpec(
        name="svamp",
        hub_id="ChilleD/SVAMP",
        hub_config=None,
        hub_split="test",
        question_field="question_concat",
        answer_field="Answer",
        answer_type="integer",
        local_format="svamp",
        local_files=("SVAMP.json",),
        id_field="ID",
        notes="local file has Body + Question; the Hub copy has question_concat (300 test)",
    ),
    BenchmarkSpec(
        name="math500",
        hub_id="HuggingFaceH4/MATH-500",
        hub_config=None,
        hub_split="test",
        question_field="problem",
        answer_field="answer",
        answer_type="expression",
        local_format="math500",
        local_files=("test_ori.jsonl", "test.jsonl"),
        id_field="unique_id",
        notes="the original's 'mathhendrycks' (nlile/hendrycks-MATH-benchmark) is MATH-500",
    ),
    BenchmarkSpec(
        name="olympiadbench",
        hub_id="Hothan/OlympiadBench",
        hub_config="OE_TO_maths_en_COMP",
        hub_split="train",
        question_field="question",
        answer_field="final_answer",
        answer_type="expression",
        local_format="olympiadbench",
        local_files=("test.jsonl",),
        id_field="id",
        filters=("text_only",),
        notes="offline only the OE_TO_maths_en_COMP subset exists; reference = final_answer[0]",
    ),
    BenchmarkSpec(
        name="gpqa",
        hub_id="Idavidrein/gpqa",
        hub_config="gpqa_main",
        hub_split="train",
        question_field="Question",
        answer_field="Correct Answer",
        answer_type="text",
        local_format="gpqa",
        local_files=("gpqa_diamond.csv", "*.csv"),
        id_field="Record ID",
        notes="gpqa_mode 'open' (original: options never shown) or 'mcq' (seeded A-D shuffle)",
    ),
    BenchmarkSpec(
        name="scibench",
        hub_id="xw27/scibench",
        hub_config=None,
        hub_split="train",
        question_field="problem_text",
        answer_field="answer_number",
        answer_type="numeric",
        local_format="scibench",
        local_files=("original/*.json", "*.json"),
        id_field="problemid",
        rel_tol=0.05,
        notes="SciBench's own check is a 5% relative error; *_sol.json duplicates are skipped",
    ),
    BenchmarkSpec(
        name="theoremqa",
        hub_id="TIGER-Lab/TheoremQA",
        hub_config=None,
        hub_split="test",
        question_field="Question",
        answer_field="Answer",
        answer_type="numeric",
        local_format="theoremqa",
        local_files=("theoremqa_test.json", "*.json"),
        id_field="id",
        filters=("no_image",),
        rel_tol=0.04,
        notes="Answer_type routes grading; TheoremQA compares floats within 4%",
    ),
    BenchmarkSpec(
        name="livemathbench",
        hub_id="opencompass/LiveMathBench",
        hub_config="v202505_all_en",
        hub_split="test",
        question_field="question",
        answer_field="answer",
        answer_type="expression",
        local_format="generic_math",
        local_files=("*.jsonl", "*.json"),
        notes="Hub only (not available offline); aime24/amc23 are the nearest local substitutes",
    ),
    BenchmarkSpec(
        name="matscibench",
        hub_id="MatSciBench/MatSciBench",
        hub_config=None,
        hub_split="test",
        question_field="question",
        answer_field="answer",
        answer_type="numeric",
        local_format="matscibench",
        local_files=("qa.csv", "*.csv"),
        id_field="qid",
        filters=("no_image",),
        rel_tol=0.05,
        notes="tuple answers become lists; FORMULA items are expressions; 5% tolerance as SciBench",
    ),
    BenchmarkSpec(
        name="math",
        hub_id="nlile/hendrycks-MATH-benchmark",
        hub_config=None,
        hub_split="test",
        question_field="Question",
        answer_field="Answer",
        answer_type="expression",
        local_format="math_csv",
        local_files=("math_test.csv", "*.csv"),
        notes="full 5000-item MATH test (simple-evals CSV, final answers only)",
    ),
    BenchmarkSpec(
        name="aime24",
        hub_id="math-ai/aime24",
        hub_config=None,
        hub_split="test",
        question_field="problem",
        answer_field="answer",
        answer_type="integer",
        local_format="generic_math",
        local_files=("test.jsonl",),
        id_field="id",
    ),
    BenchmarkSpec(
        name="amc23",
        hub_id="math-ai/amc23",
        hub_config=None,
        hub_split="test",
        question_field="question",
        answer_field="answer",
        answer_type="integer",
        local_format="generic_math",
        local_files=("test.jsonl",),
        id_field="id",
    ),
    BenchmarkSpec(
        name="minerva_math",
        hub_id="math-ai/minervamath",
        hub_config=None,
        hub_split="test",
        question_field="problem",
        answer_field="solution",
        answer_type="expression",
        local_format="minerva",
        local_files=("test.jsonl",),
        id_field="idx",
        notes="the reference is the last \\boxed{} of the solution",
    ),
)

REGISTRY: dict[str, BenchmarkSpec] = {spec.name: spec for spec in _SPECS}

# The original code's registry keys, for configs written against it.
ALIASES = {"gsm": "gsm8k", "gsm8ksymbolic": "gsm_symbolic", "gsmsymbolic": "gsm_symbolic"}
ALIASES |= {"mathhendrycks": "math500", "minerva": "minerva_math"}

STEM_TEN = (
    "gsm8k",
    "gsm_symbolic",
    "svamp",
    "math500",
    "olympiadbench",
    "gpqa",
    "scibench",
    "theoremqa",
    "livemathbench",
    "matscibench",
)


# Item counts for the cost estimate when a config gives no expected_items: the local files of
# ../shared/benchmarks (SOURCES.md) and the Hub test sets (reference §3.2).
NOMINAL_ITEMS = {
    "gsm8k": (1319, 1319),
    "gsm_symbolic": (2500, 5000),
    "svamp": (1000, 300),
    "math500": (500, 500),
    "olympiadbench": (675, 1438),
    "gpqa": (198, 448),
    "scibench": (580, 692),
    "theoremqa": (747, 747),
    "livemathbench": (100, 100),
    "matscibench": (1025, 1025),
    "math": (5000, 5000),
    "aime24": (30, 30),
    "amc23": (40, 40),
    "minerva_math": (272, 272),
}


def nominal_items(name: str, local: bool) -> int | None:
    """The usual item count of a registered benchmark (local files or the Hub), if known."""
    counts = NOMINAL_ITEMS.get(ALIASES.get(name, name))
    return None if counts is None else counts[0 if local else 1]


def get_spec(name: str) -> BenchmarkSpec:
    """The spec of a registered benchmark (original registry keys are accepted too)."""
    key = ALIASES.get(name, name)
    if key not in REGISTRY:
        raise KeyError(f"unknown benchmark {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[key]
