"""Entropy profiles: one value per generated token, from that step's log-probabilities.

Variants (``features.entropy``), all in nats:

``topk`` (the paper's, arXiv 2601.09001 §4.1)
    H_t = - sum_{i in top-k(t)} exp(l_i) * l_i over the returned top-k, the missing tail mass
    simply ignored (no renormalisation): a partial, lower-bound-like entropy.
``topk_sampled``
    The paper's exact set "top-k plus the sampled token if it falls outside them": ``topk``
    plus the sampled token's -exp(l) * l at the steps where it is not among the top-k
    (``sampled_in_topk`` is False). Differs from ``topk`` only at those steps.
``full``
    The full-vocabulary entropy the transformers backend captures at every step
    (``full_entropy`` column). Backends that cannot report it (vLLM) leave the column null;
    asking for ``full`` on such rows is an error, never a silent fallback.
``topk_renormalised``
    The top-k treated as a proper distribution (renormalised to sum to one).
"""

from __future__ import annotations

import numpy as np

ENTROPY_VARIANTS = ("topk", "topk_sampled", "full", "topk_renormalised")


class MissingFullEntropyError(ValueError):
    """``full`` entropy was asked for, but the rows carry no ``full_entropy``."""


def entropy_profile(
    topk_logprobs: np.ndarray,
    variant: str = "topk",
    *,
    sampled_logprobs=None,
    sampled_in_topk=None,
    full_entropy=None,
) -> np.ndarray:
    """Per-step entropy of one response, a float64 array of length ``steps``.

    ``topk_logprobs`` is ``(steps, k)``; ``-inf`` entries (padding, or tokens with zero
    probability) contribute nothing. ``topk_sampled`` also needs the per-step
    ``sampled_logprobs`` and ``sampled_in_topk``; ``full`` needs ``full_entropy``. An empty
    input gives an empty profile.
    """
    if variant not in ENTROPY_VARIANTS:
        raise ValueError(f"unknown entropy variant {variant!r}; choose one of {ENTROPY_VARIANTS}")
    if variant == "full":
        return _full_profile(full_entropy)
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
    profile = -_plogp(logp).sum(axis=1)
    if variant == "topk_sampled":
        profile += _sampled_outside_topk(logp.shape[0], sampled_logprobs, sampled_in_topk)
    return profile


def _plogp(logp: np.ndarray) -> np.ndarray:
    finite = np.where(np.isfinite(logp), logp, 0.0)  # exp(-inf) * -inf would be NaN
    return np.exp(finite) * finite


def _sampled_outside_topk(steps: int, sampled_logprobs, sampled_in_topk) -> np.ndarray:
    """-exp(l) * l of the sampled token at the steps where it is outside the top-k, else 0."""
    if sampled_logprobs is None or sampled_in_topk is None:
        raise ValueError(
            "entropy variant 'topk_sampled' needs the per-step sampled_logprobs and "
            "sampled_in_topk columns of the generation rows"
        )
    sampled = np.asarray(sampled_logprobs, dtype=np.float64)
    in_topk = np.asarray(sampled_in_topk, dtype=bool)
    if sampled.shape != (steps,) or in_topk.shape != (steps,):
        raise ValueError(
            f"top-k log-probabilities have {steps} steps but sampled_logprobs has "
            f"{sampled.size} and sampled_in_topk {in_topk.size}"
        )
    return np.where(in_topk, 0.0, -_plogp(sampled))


def _full_profile(full_entropy) -> np.ndarray:
    if full_entropy is None:
        raise MissingFullEntropyError(
            "entropy variant 'full' needs the full_entropy column, which is null in these rows: "
            "the vLLM backend does not report full-vocabulary entropy. Use features.entropy: "
            "topk or topk_sampled, or generate with the transformers backend"
        )
    values = np.asarray(full_entropy, dtype=np.float64).reshape(-1)  # None steps become NaN
    if np.isnan(values).any():
        raise MissingFullEntropyError(
            f"full_entropy is missing at {int(np.isnan(values).sum())} of {values.size} steps; "
            "entropy variant 'full' needs it at every step"
        )
    return values


def stack_steps(steps) -> np.ndarray:
    """Turn a Parquet list-of-lists cell into a ``(steps, k)`` float array."""
    if steps is None or len(steps) == 0:
        return np.zeros((0, 0), dtype=np.float64)
    if isinstance(steps, np.ndarray) and steps.dtype != object:
        return steps.astype(np.float64, copy=False)
    rows = [np.asarray(s, dtype=np.float64) for s in steps]
    widths = {row.size for row in rows}
    if len(widths) > 1:
        raise ValueError(f"top-k log-probabilities vary in width across steps: {sorted(widths)}")
    return np.concatenate(rows).reshape(len(rows), -1)  # faster than vstack of 1-D rows
