"""The 17 features of an entropy profile and its sampled-token log-probabilities.

Two definition sets (``features.definitions``); names and order are the same in both.

``standard`` (the default: fixed here once, unit-tested; it repairs the reference's
inconsistencies, §9.10):

=====  ==========  =====================================================================
index  name        definition, with p = entropy profile (length T), nll_t = -log p(y_t)
=====  ==========  =====================================================================
0      mean        mean(p)
1      std         population standard deviation of p (ddof=0); 0 for T=1
2      max         max(p)
3-7    q10..q90    quantiles of p, linear interpolation
8      skewness    mean((p-mean)^3) / std^3; 0 when std == 0
9      kurtosis    excess (Fisher) kurtosis mean((p-mean)^4) / std^4 - 3; 0 when std == 0
10     se_sum      sum(p), the "entropy sum" (SEA)
11     nll_avg     mean(nll)
12     nll_max     max(nll)
13     nll_sum     sum(nll)
14     lntp        exp(mean log p(y_t)): length-normalised token probability
15     mtp         exp(min log p(y_t)): minimum token probability
16     ppl         exp(nll_avg): perplexity
=====  ==========  =====================================================================

``paper`` (reference §4.2, the original's torch code, to reproduce the paper's numbers):
std is unbiased (N-1), so NaN for T=1, and with it skewness and kurtosis;
skewness = mean((p-mean)^3) / (std^3 + 1e-8); kurtosis = mean((p-mean)^4) / (std^4 + 1e-8),
non-excess (Pearson); lntp = sum(nll * log(nll + 1e-8)); mtp = max(nll * log(nll + 1e-8));
ppl = exp(nll_avg); the rest as above. The original held p and nll as float32 torch tensors,
so these are computed in float32 too (numpy, same formulas and interpolation): the +1e-8
terms, overflow and rounding then behave as they did there. Values agree with that torch code
to float32 rounding (the tests check it against torch).

Feature sets (``FEATURE_SETS``): 17D (all), 14D, 10D (0-9), 3D (max, se_sum, nll_sum), 1D
(se_sum). Under the standard definitions lntp = exp(-nll_avg) = 1/ppl and mtp = exp(-nll_max)
are monotone transforms of nll_avg and nll_max, and so is ppl: 17D holds three duplicates,
which add nothing to a tree and skew an L1 penalty or an MLP toward the NLL family. 14D is 17D
without them.

An empty response (T=0), or one with no steps in the chosen ``segment``, has no profile:
every feature is NaN and the row is flagged, so the estimator stage can drop it and count it
instead of training on a made-up value.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from entropy_sentinel.features.entropy import (
    ENTROPY_VARIANTS,
    MissingFullEntropyError,
    entropy_profile,
    stack_steps,
)

DISTRIBUTION_FEATURES = (
    "mean",
    "std",
    "max",
    "q10",
    "q25",
    "q50",
    "q75",
    "q90",
    "skewness",
    "kurtosis",
)
LOGPROB_FEATURES = ("nll_avg", "nll_max", "nll_sum", "lntp", "mtp", "ppl")
FEATURE_NAMES = (*DISTRIBUTION_FEATURES, "se_sum", *LOGPROB_FEATURES)

# Beyond the paper, from the same log-probs and the response text (see answer_features).
ANSWER_FEATURES = (
    "answer_stated",
    "answer_se_mean",
    "answer_nll_mean",
    "answer_nll_max",
    "truncated_flag",
    "log_tokens",
)
ALL_FEATURES = (*FEATURE_NAMES, *ANSWER_FEATURES)

_14D = tuple(n for n in FEATURE_NAMES if n not in ("lntp", "mtp", "ppl"))
FEATURE_SETS = {
    "17D": FEATURE_NAMES,
    "14D": _14D,
    "10D": DISTRIBUTION_FEATURES,
    "3D": ("max", "se_sum", "nll_sum"),
    "1D": ("se_sum",),
    "14D+answer": (*_14D, *ANSWER_FEATURES),
    "3D+answer": ("max", "se_sum", "nll_sum", *ANSWER_FEATURES),
    "answer": ANSWER_FEATURES,
}
TAIL_TOKENS = 8  # the answer span of a response that states no answer: its last tokens

DEFINITIONS = ("standard", "paper")
SEGMENTS = ("all", "answer", "reasoning")
LOGPROBS_MODES = ("raw", "processed")
PROVENANCE_KEY = "feature_spec"

_QUANTILES = (0.10, 0.25, 0.50, 0.75, 0.90)
_QUANTILE_NAMES = ("q10", "q25", "q50", "q75", "q90")
_EPS = 1e-12
_PAPER_EPS = np.float32(1e-8)


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a feature row assumes: how it was computed and from what kind of rows.

    ``k`` (the top-k width) and ``logprobs_mode`` describe the generation rows; ``None``
    means unknown and never counts as a mismatch.
    """

    definitions: str = "standard"
    entropy: str = "topk"
    segment: str = "all"
    k: int | None = None
    logprobs_mode: str | None = None

    def __post_init__(self):
        for key, allowed in (
            ("definitions", DEFINITIONS),
            ("entropy", ENTROPY_VARIANTS),
            ("segment", SEGMENTS),
            ("logprobs_mode", (*LOGPROBS_MODES, None)),
        ):
            value = getattr(self, key)
            if value not in allowed:
                choices = ", ".join(repr(a) for a in allowed)
                raise ValueError(f"feature spec key {key!r} is {value!r}; allowed: {choices}")
        k = self.k
        if k is not None and (isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1):
            raise ValueError(f"feature spec key 'k' is {k!r}; allowed: a positive integer or None")
        if k is not None:
            object.__setattr__(self, "k", int(k))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> FeatureSpec:
        """A spec from a mapping such as the ``features:`` config block or ``as_dict()``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown feature spec keys {unknown}; allowed: {sorted(known)}")
        return cls(**data)

    def mismatches(
        self,
        other: FeatureSpec,
        *,
        ours: str = "estimator trained on",
        theirs: str = "rows computed with",
    ) -> list[str]:
        """Human-readable differences from ``other``, one per key; unknown (None) never differs."""
        found = []
        for f in fields(self):
            mine, their = getattr(self, f.name), getattr(other, f.name)
            if mine is not None and their is not None and mine != their:
                found.append(f"{f.name}: {ours} {mine!r}, {theirs} {their!r}")
        return found

    def for_rows(self, generations) -> FeatureSpec:
        """This spec with ``k`` and ``logprobs_mode`` read from generation rows.

        Raises ValueError when the rows disagree among themselves or with a known value here.
        """
        found = {"k": _topk_widths(generations), "logprobs_mode": _logprobs_modes(generations)}
        resolved = {}
        for key, values in found.items():
            if len(values) > 1:
                listing = "; ".join(
                    f"{v!r} in {len(ids)} rows (e.g. {ids[0]!r})" for v, ids in values.items()
                )
                raise ValueError(f"generation rows disagree on {key}: {listing}")
            known = getattr(self, key)
            value = next(iter(values), known)
            if known is not None and value != known:
                raise ValueError(f"feature spec has {key}={known!r} but the rows have {value!r}")
            resolved[key] = value
        return replace(self, **resolved)


def _topk_widths(generations) -> dict[int, list]:
    """Top-k width of each non-empty row -> the item ids that have it."""
    widths: dict = {}
    for item_id, steps in zip(generations["item_id"], generations["topk_logprobs"], strict=True):
        if steps is not None and len(steps):
            widths.setdefault(len(steps[0]), []).append(item_id)
    return widths


def _logprobs_modes(generations) -> dict[str, list]:
    """``logprobs_mode`` of each row that has one (error rows have none) -> its item ids."""
    modes: dict = {}
    if "logprobs_mode" in generations:
        for item_id, mode in zip(generations["item_id"], generations["logprobs_mode"], strict=True):
            if isinstance(mode, str):
                modes.setdefault(mode, []).append(item_id)
    return modes


def compute_features(
    profile: np.ndarray, sampled_logprobs: np.ndarray, definitions: str = "standard"
) -> dict[str, float]:
    """The 17 named features of one response; see the module docstring for definitions."""
    if definitions not in DEFINITIONS:
        raise ValueError(
            f"unknown feature definitions {definitions!r}; choose one of {DEFINITIONS}"
        )
    p = np.asarray(profile, dtype=np.float64)
    lp = np.asarray(sampled_logprobs, dtype=np.float64)
    if p.size == 0 or lp.size == 0:
        return dict.fromkeys(FEATURE_NAMES, float("nan"))
    if p.shape != lp.shape:
        raise ValueError(f"profile has {p.size} steps but sampled log-probs have {lp.size}")
    values = _paper(p, lp) if definitions == "paper" else _standard(p, lp)
    return {name: float(values[name]) for name in FEATURE_NAMES}


def _standard(p: np.ndarray, lp: np.ndarray) -> dict:
    columns = standard_features(p, lp, np.array([0, p.size]))
    return {name: values[0] for name, values in columns.items()}


def standard_features(p: np.ndarray, lp: np.ndarray, offsets: np.ndarray) -> dict[str, np.ndarray]:
    """The standard definitions for every response ``offsets[i]:offsets[i+1]`` of the
    concatenated profiles ``p`` and sampled log-probs ``lp`` (all non-empty), vectorised:
    one call scores a whole traffic log, and a single response is the case of one segment."""
    starts, n = offsets[:-1], np.diff(offsets)
    segment = np.repeat(np.arange(len(n)), n)
    mean = np.add.reduceat(p, starts) / n
    centred = p - mean[segment]
    std = np.sqrt(np.add.reduceat(centred**2, starts) / n)
    flat = std < _EPS
    safe = np.where(flat, 1.0, std)
    skewness = np.where(flat, 0.0, np.add.reduceat(centred**3, starts) / n / safe**3)
    kurtosis = np.where(flat, 0.0, np.add.reduceat(centred**4, starts) / n / safe**4 - 3.0)
    ordered = p[np.lexsort((p, segment))]
    quantiles = {}
    for name, q in zip(_QUANTILE_NAMES, _QUANTILES, strict=True):
        position = (n - 1) * q
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, n - 1)
        a, b = ordered[starts + below], ordered[starts + above]
        t = position - below
        diff = b - a
        # numpy's linear interpolation, rounded as np.quantile rounds it
        quantiles[name] = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    nll = -lp
    nll_avg = np.add.reduceat(nll, starts) / n
    columns = {
        "mean": mean,
        "std": std,
        "max": np.maximum.reduceat(p, starts),
        **quantiles,
        "skewness": skewness,
        "kurtosis": kurtosis,
        "se_sum": np.add.reduceat(p, starts),
        "nll_avg": nll_avg,
        "nll_max": np.maximum.reduceat(nll, starts),
        "nll_sum": np.add.reduceat(nll, starts),
        "lntp": np.exp(np.add.reduceat(lp, starts) / n),
        "mtp": np.exp(np.minimum.reduceat(lp, starts)),
        "ppl": np.exp(nll_avg),
    }
    return {name: columns[name] for name in FEATURE_NAMES}


def _paper(p: np.ndarray, lp: np.ndarray) -> dict:
    p = p.astype(np.float32)
    nll = (-lp).astype(np.float32)
    mean = p.mean(dtype=np.float32)
    centred = p - mean
    # torch.std: unbiased; NaN for a single step (numpy would warn and divide by zero)
    std = (
        np.sqrt((centred**2).sum(dtype=np.float32) / np.float32(p.size - 1))
        if p.size > 1
        else np.float32("nan")
    )
    nll_log_nll = nll * np.log(nll + _PAPER_EPS)
    nll_avg = nll.mean(dtype=np.float32)
    return {
        "mean": mean,
        "std": std,
        "max": p.max(),
        **dict(zip(_QUANTILE_NAMES, np.quantile(p, np.float32(_QUANTILES)), strict=True)),
        "skewness": (centred**3).mean(dtype=np.float32) / (std**3 + _PAPER_EPS),
        "kurtosis": (centred**4).mean(dtype=np.float32) / (std**4 + _PAPER_EPS),
        "se_sum": p.sum(dtype=np.float32),
        "nll_avg": nll_avg,
        "nll_max": nll.max(),
        "nll_sum": nll.sum(dtype=np.float32),
        "lntp": nll_log_nll.sum(dtype=np.float32),
        "mtp": nll_log_nll.max(),
        "ppl": np.exp(nll_avg),
    }


def segment_mask(segment: str, is_reasoning, steps: int) -> np.ndarray | None:
    """Boolean mask of the steps in ``segment`` (None for "all": every step)."""
    if segment not in SEGMENTS:
        raise ValueError(f"unknown segment {segment!r}; choose one of {SEGMENTS}")
    if segment == "all":
        return None
    if is_reasoning is None:
        raise ValueError(
            f"features.segment {segment!r} needs the per-step is_reasoning column of the "
            "generation rows, which is missing; regenerate, or use segment 'all'"
        )
    reasoning = np.asarray(is_reasoning, dtype=bool).reshape(-1)
    if reasoning.size != steps:
        raise ValueError(f"is_reasoning has {reasoning.size} steps but the response has {steps}")
    return reasoning if segment == "reasoning" else ~reasoning


def response_features(
    topk_logprobs,
    sampled_logprobs,
    spec: FeatureSpec | None = None,
    *,
    full_entropy=None,
    is_reasoning=None,
    sampled_in_topk=None,
) -> dict[str, float]:
    """The 17 named features of one response under ``spec`` (default: ``FeatureSpec()``).

    Arguments are one generation row's per-step columns (``topk_logprobs`` is steps × k).
    ``spec.k`` and ``spec.logprobs_mode`` only describe the rows and are not used here.
    """
    spec = spec or FeatureSpec()
    sampled = np.asarray(sampled_logprobs if sampled_logprobs is not None else [], dtype=np.float64)
    if sampled.size == 0:
        return dict.fromkeys(FEATURE_NAMES, float("nan"))
    topk = stack_steps(topk_logprobs)
    if topk.shape[0] != sampled.size:
        raise ValueError(
            f"topk_logprobs has {topk.shape[0]} steps but sampled_logprobs {sampled.size}"
        )
    mask = segment_mask(spec.segment, is_reasoning, sampled.size)
    if mask is not None:
        if not mask.any():
            return dict.fromkeys(FEATURE_NAMES, float("nan"))
        topk, sampled = topk[mask], sampled[mask]
        sampled_in_topk = (
            None if sampled_in_topk is None else np.asarray(sampled_in_topk, bool)[mask]
        )
        if full_entropy is not None:
            full_entropy = np.asarray(full_entropy, dtype=np.float64)[mask]
    profile = entropy_profile(
        topk,
        spec.entropy,
        sampled_logprobs=sampled,
        sampled_in_topk=sampled_in_topk,
        full_entropy=full_entropy,
    )
    return compute_features(profile, sampled, spec.definitions)


def answer_span(response: str, n_tokens: int) -> tuple[int, bool]:
    """(number of final steps that hold the stated final answer, whether one was stated).

    Generation rows keep token ids, not token texts, so the span's first step is placed by the
    share of the response's characters that precede the answer (within a few tokens of the true
    boundary on these models' output); it runs to the end, the end-of-turn token included. A
    response that states no answer gets its last ``TAIL_TOKENS`` steps.
    """
    from entropy_sentinel.grading.extract import answer_start  # here: grading is slow to import

    start = answer_start(response) if response else None
    if start is None or n_tokens < 1:
        return min(TAIL_TOKENS, n_tokens), False
    share = (len(response) - start) / len(response)
    return int(min(n_tokens, max(1, np.ceil(share * n_tokens)))), True


def answer_features(
    profile: np.ndarray, sampled_logprobs: np.ndarray, response: str, finish_reason
) -> dict[str, float]:
    """The features of ``ANSWER_FEATURES`` from one response's whole entropy profile and
    sampled log-probs: was a final answer stated, the mean entropy and the mean and maximum
    NLL over its span, truncation (finish reason "length") and log(1 + tokens)."""
    n = int(np.size(profile))
    steps, stated = answer_span(response or "", n)
    nll = -np.asarray(sampled_logprobs, dtype=np.float64)[n - steps :]
    tail = np.asarray(profile, dtype=np.float64)[n - steps :]
    return {
        "answer_stated": float(stated),
        "answer_se_mean": float(tail.mean()) if steps else float("nan"),
        "answer_nll_mean": float(nll.mean()) if steps else float("nan"),
        "answer_nll_max": float(nll.max()) if steps else float("nan"),
        "truncated_flag": float(finish_reason == "length"),
        "log_tokens": float(np.log1p(n)),
    }


def feature_table(
    generations, grades, benchmark, split: dict[str, list[str]], spec: FeatureSpec | None = None
):
    """One row per response: ids, slice labels, split, correctness and the 17 features.

    Inputs are DataFrames: generation rows, grade rows (``item_id``, ``correct``), the
    normalised benchmark and its persisted split. ``spec`` (default ``FeatureSpec()``) says how
    to compute; its known ``k``/``logprobs_mode`` must match the rows. Responses with no tokens,
    or none in the chosen segment, get NaN features and ``segment_tokens`` 0 (the estimator
    stage drops and counts them).
    """
    import pandas as pd

    spec = (spec or FeatureSpec()).for_rows(generations)
    if spec.entropy == "full":
        _require_full_entropy(generations)
    rows = []
    for gen in generations.itertuples(index=False):
        n_tokens = int(gen.n_tokens or 0)
        try:
            features = response_features(
                gen.topk_logprobs,
                gen.sampled_logprobs if n_tokens else None,
                spec,
                full_entropy=getattr(gen, "full_entropy", None),
                is_reasoning=getattr(gen, "is_reasoning", None),
                sampled_in_topk=getattr(gen, "sampled_in_topk", None),
            )
            answer = answer_features(
                *_whole_profile(gen, spec, n_tokens), gen.response, gen.finish_reason
            )
        except ValueError as error:
            raise type(error)(f"item {gen.item_id!r}: {error}") from error
        if spec.segment == "all" or not n_tokens:
            segment_tokens = n_tokens
        else:
            segment_tokens = int(segment_mask(spec.segment, gen.is_reasoning, n_tokens).sum())
        rows.append(
            {
                "item_id": gen.item_id,
                "n_tokens": n_tokens,
                "segment_tokens": segment_tokens,
                "finish_reason": gen.finish_reason,
                "truncated": gen.finish_reason == "length",
                **features,
                **answer,
            }
        )
    table = pd.DataFrame(rows)
    meta = benchmark[["item_id", "benchmark", "domain"]]
    table = meta.merge(table, on="item_id", how="inner", validate="one_to_one")
    table = attach_labels(table, grades, split)
    leading = ["item_id", "benchmark", "domain", "split", "correct", "n_tokens"]
    rest = ["segment_tokens", "finish_reason", "truncated", *ALL_FEATURES]
    return table[leading + rest]


def attach_labels(table, grades, split: dict[str, list[str]]):
    """``table`` with each row's ``correct`` (from ``grades``; null when ungraded) and
    ``split`` (``test`` for the ids the persisted split lists as test, else ``train``)."""
    table = table.merge(grades[["item_id", "correct"]], on="item_id", how="left")
    table["split"] = np.where(table["item_id"].isin(set(split["test"])), "test", "train")
    return table


def _whole_profile(gen, spec: FeatureSpec, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Entropy profile and sampled log-probs of every step of a generation row (the answer
    span is at the end whatever ``spec.segment`` scores)."""
    if not n_tokens:
        return np.zeros(0), np.zeros(0)
    sampled = np.asarray(gen.sampled_logprobs, dtype=np.float64)
    profile = entropy_profile(
        stack_steps(gen.topk_logprobs),
        spec.entropy,
        sampled_logprobs=sampled,
        sampled_in_topk=getattr(gen, "sampled_in_topk", None),
        full_entropy=getattr(gen, "full_entropy", None),
    )
    return profile, sampled


def _require_full_entropy(generations) -> None:
    if "full_entropy" not in generations:
        raise MissingFullEntropyError(
            "entropy variant 'full' needs the full_entropy column, which these generation rows "
            "lack; use features.entropy: topk or topk_sampled"
        )
    missing = [
        item_id
        for item_id, n, full in zip(
            generations["item_id"],
            generations["n_tokens"],
            generations["full_entropy"],
            strict=True,
        )
        if (n or 0) > 0 and full is None
    ]
    if missing:
        raise MissingFullEntropyError(
            "entropy variant 'full' needs the full_entropy column, which is null in "
            f"{len(missing)} of {len(generations)} responses (e.g. {missing[0]!r}): the vLLM "
            "backend does not report full-vocabulary entropy. Use features.entropy: topk or "
            "topk_sampled, or generate with the transformers backend"
        )


def read_feature_spec(paths: str | Path | Iterable[str | Path]) -> FeatureSpec:
    """The feature spec stored in one or more feature Parquet files (they must agree).

    Unknown (None) ``k``/``logprobs_mode`` in one file is filled from the others.
    """
    from entropy_sentinel.provenance import read_provenance

    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    if not paths:
        raise ValueError("read_feature_spec needs at least one feature file")
    stored = {str(path): read_provenance(path).get(PROVENANCE_KEY) for path in paths}
    lacking = [path for path, spec in stored.items() if spec is None]
    if lacking:
        raise ValueError(
            f"no {PROVENANCE_KEY!r} in the provenance of {', '.join(lacking)}: written before "
            "feature specs were recorded; re-run the features rule for them"
        )
    specs = {path: FeatureSpec.from_dict(spec) for path, spec in stored.items()}
    agreed, conflicts = {}, []
    for f in fields(FeatureSpec):
        where: dict = {}
        for path, spec in specs.items():
            if (value := getattr(spec, f.name)) is not None:
                where.setdefault(value, []).append(path)
        if len(where) > 1:
            listing = "; ".join(f"{v!r} in {', '.join(ps)}" for v, ps in where.items())
            conflicts.append(f"{f.name}: {listing}")
        agreed[f.name] = next(iter(where), None)
    if conflicts:
        raise ValueError("feature files disagree on their feature spec: " + " | ".join(conflicts))
    return FeatureSpec(**agreed)
