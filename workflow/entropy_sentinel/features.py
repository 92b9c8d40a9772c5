"""The 17 features of an entropy profile and its sampled-token log-probabilities.

Definitions (fixed here once, unit-tested; they repair the reference's inconsistencies):

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

An empty response (T=0) has no profile: every feature is NaN and the row is flagged, so
the estimator stage can drop it and count it instead of training on a made-up value.
"""

from __future__ import annotations

import numpy as np

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

FEATURE_SETS = {
    "17D": FEATURE_NAMES,
    "10D": DISTRIBUTION_FEATURES,
    "3D": ("max", "se_sum", "nll_sum"),
    "1D": ("se_sum",),
}

_QUANTILES = (0.10, 0.25, 0.50, 0.75, 0.90)
_EPS = 1e-12


def compute_features(profile: np.ndarray, sampled_logprobs: np.ndarray) -> dict[str, float]:
    """The 17 named features of one response; see the module docstring for definitions."""
    p = np.asarray(profile, dtype=np.float64)
    lp = np.asarray(sampled_logprobs, dtype=np.float64)
    if p.size == 0 or lp.size == 0:
        return dict.fromkeys(FEATURE_NAMES, float("nan"))
    if p.shape != lp.shape:
        raise ValueError(f"profile has {p.size} steps but sampled log-probs have {lp.size}")

    mean = p.mean()
    centred = p - mean
    std = np.sqrt(np.mean(centred**2))
    degenerate = std < _EPS
    skewness = 0.0 if degenerate else np.mean(centred**3) / std**3
    kurtosis = 0.0 if degenerate else np.mean(centred**4) / std**4 - 3.0
    nll = -lp
    values = {
        "mean": mean,
        "std": std,
        "max": p.max(),
        **{f"q{round(q * 100)}": np.quantile(p, q) for q in _QUANTILES},
        "skewness": skewness,
        "kurtosis": kurtosis,
        "se_sum": p.sum(),
        "nll_avg": nll.mean(),
        "nll_max": nll.max(),
        "nll_sum": nll.sum(),
        "lntp": np.exp(lp.mean()),
        "mtp": np.exp(lp.min()),
        "ppl": np.exp(nll.mean()),
    }
    return {name: float(values[name]) for name in FEATURE_NAMES}


def feature_table(
    generations,
    grades,
    benchmark,
    split: dict[str, list[str]],
    entropy_variant: str = "topk",
):
    """One row per response: ids, slice labels, split, correctness and the 17 features.

    Inputs are DataFrames: generation rows, grade rows (``item_id``, ``correct``), the
    normalised benchmark and its persisted split. Responses with no tokens get NaN features
    (the estimator stage drops and counts them).
    """
    import pandas as pd

    from .entropy import entropy_profile, stack_steps

    test_ids = set(split["test"])
    rows = []
    for gen in generations.itertuples(index=False):
        profile = entropy_profile(stack_steps(gen.topk_logprobs), entropy_variant)
        sampled = np.asarray(gen.sampled_logprobs if gen.n_tokens else [], dtype=np.float64)
        rows.append(
            {
                "item_id": gen.item_id,
                "n_tokens": int(gen.n_tokens or 0),
                "finish_reason": gen.finish_reason,
                "truncated": gen.finish_reason == "length",
                **compute_features(profile, sampled),
            }
        )
    table = pd.DataFrame(rows)
    meta = benchmark[["item_id", "benchmark", "domain"]]
    table = meta.merge(table, on="item_id", how="inner", validate="one_to_one")
    table = table.merge(grades[["item_id", "correct"]], on="item_id", how="left")
    table["split"] = np.where(table["item_id"].isin(test_ids), "test", "train")
    leading = ["item_id", "benchmark", "domain", "split", "correct", "n_tokens"]
    rest = ["finish_reason", "truncated", *FEATURE_NAMES]
    return table[leading + rest]
