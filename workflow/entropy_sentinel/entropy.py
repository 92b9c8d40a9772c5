"""Entropy profiles: one value per generated token, from that step's top-k log-probabilities.

The reference definition (arXiv 2601.09001, §4.1) is the Shannon entropy of the *returned*
top-k distribution, without renormalising the missing tail mass:

    H_t = - sum_{i in top-k(t)} exp(l_i) * l_i          (nats)

It is a lower bound on the full-vocabulary entropy whenever the tail is small. The
renormalised variant treats the top-k as a proper distribution and is offered as an option.
"""

from __future__ import annotations

import numpy as np

ENTROPY_VARIANTS = ("topk", "topk_renormalised")


def entropy_profile(topk_logprobs: np.ndarray, variant: str = "topk") -> np.ndarray:
    """Per-step entropy of a ``(steps, k)`` array of log-probabilities.

    ``-inf`` entries (padding, or tokens with zero probability) contribute nothing.
    Returns a float64 array of length ``steps``; an empty input gives an empty profile.
    """
    if variant not in ENTROPY_VARIANTS:
        raise ValueError(f"unknown entropy variant {variant!r}; choose one of {ENTROPY_VARIANTS}")
    logp = np.asarray(topk_logprobs, dtype=np.float64)
    if logp.ndim != 2:
        if logp.size == 0:
            return np.zeros(0, dtype=np.float64)
        raise ValueError(f"top-k log-probabilities must be 2-D (steps, k), got shape {logp.shape}")
    if logp.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    if variant == "topk_renormalised":
        finite_max = np.max(np.where(np.isfinite(logp), logp, -np.inf), axis=1, keepdims=True)
        shifted = np.exp(logp - finite_max)
        logp = logp - finite_max - np.log(shifted.sum(axis=1, keepdims=True))
    finite = np.where(np.isfinite(logp), logp, 0.0)  # exp(-inf) * -inf would be NaN
    return -(np.exp(finite) * finite).sum(axis=1)


def stack_steps(steps) -> np.ndarray:
    """Turn a Parquet list-of-lists cell into a ``(steps, k)`` float array."""
    if steps is None or len(steps) == 0:
        return np.zeros((0, 0), dtype=np.float64)
    return np.vstack([np.asarray(s, dtype=np.float64) for s in steps])
