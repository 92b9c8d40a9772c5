"""Scoring traffic with a saved estimator: p(correct) per response, accuracy per slice.

Features of many responses are computed at once. The per-step entropy comes from
``entropy.entropy_profile`` over all steps stacked; the 17 features of the ``standard``
definitions are then per-response reductions of it (segment sums, maxima, a segmented sort for
the quantiles). Those definitions live in ``features.compute``, and tests hold the two equal.
Other feature specs (paper definitions, answer/reasoning segments) take the per-response path
of ``features.compute`` directly. The answer-span features come from each response's text and
finish reason through ``features.compute.answer_features``, as at training.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from entropy_sentinel.estimate.classifier import feature_names
from entropy_sentinel.estimate.regime import SAME, SHIFTED, UNKNOWN
from entropy_sentinel.features.compute import (
    ANSWER_FEATURES,
    FEATURE_NAMES,
    FeatureSpec,
    answer_features,
    response_features,
    standard_features,
)
from entropy_sentinel.features.entropy import entropy_profile
from entropy_sentinel.serve.logs import EXAMPLES, LogprobBatch, TrafficError

# what score and monitor write per response: its id (labels and alerts join on it), where it
# came from, and what the estimator made of it
RESPONSE_COLUMNS = ("id", "log", "line", "slice", "time", "n_tokens", "finish_reason")
RESPONSE_COLUMNS += ("p_correct", "row_estimate")
SLICE_COLUMNS = ("slice", "n", "n_labels", "point", "low", "high", "regime")  # slices.csv first


def check_scorable(estimator, batch: LogprobBatch, source: str) -> None:
    """Refuse a log the estimator cannot honestly score (raw vs processed, top-k width, the
    features it needs)."""
    spec = estimator.feature_spec_
    if spec.logprobs_mode is not None:
        if batch.logprobs_mode is None:
            raise TrafficError(
                f"{source}: the estimator was trained on {spec.logprobs_mode} log-probs and the "
                "log does not say which kind it holds: declare it with --logprobs-mode "
                "raw|processed (vLLM: --logprobs-mode raw_logprobs gives raw; llama-server: raw)"
            )
        if batch.logprobs_mode != spec.logprobs_mode:
            raise TrafficError(
                f"{source}: the log holds {batch.logprobs_mode} log-probs but the estimator was "
                f"trained on {spec.logprobs_mode} ones: their entropies are not comparable. Serve "
                f"with {spec.logprobs_mode} log-probs or use an estimator trained on "
                f"{batch.logprobs_mode} ones"
            )
    if spec.k is not None and batch.k is not None and batch.k < spec.k:
        raise TrafficError(
            f"{source}: {batch.k} top log-probs per token, the estimator needs {spec.k}"
        )
    if spec.entropy == "full":
        raise TrafficError(
            f"{source}: the estimator uses full-vocabulary entropy, which servers do not report; "
            "use an estimator trained with features.entropy: topk or topk_sampled"
        )


def batch_features(batch: LogprobBatch, spec: FeatureSpec, answer: bool = False) -> pd.DataFrame:
    """The 17 features of every response of ``batch`` (one row each, in order), and with
    ``answer`` the answer-span features, from each response's text and finish reason as
    ``features.compute.feature_table`` computes them from generation rows."""
    per_response = spec.definitions != "standard" or spec.segment != "all"
    if per_response and not answer:
        return _per_response(batch, spec, range(len(batch)))
    profile = entropy_profile(
        batch.topk, spec.entropy, sampled_logprobs=batch.sampled, sampled_in_topk=batch.in_topk
    )
    if per_response:
        table = _per_response(batch, spec, range(len(batch)))
    else:
        table = pd.DataFrame(standard_features(profile, batch.sampled, batch.offsets))
    if not answer:
        return table
    text, finish = batch.meta["response"].to_numpy(), batch.meta["finish_reason"].to_numpy()
    spans = [
        answer_features(profile[batch.steps(i)], batch.sampled[batch.steps(i)], text[i], finish[i])
        for i in range(len(batch))
    ]
    return pd.concat([table, pd.DataFrame(spans, columns=list(ANSWER_FEATURES))], axis=1)


def _per_response(batch: LogprobBatch, spec: FeatureSpec, rows) -> pd.DataFrame:
    return pd.DataFrame(
        [
            response_features(
                batch.topk[batch.steps(i)],
                batch.sampled[batch.steps(i)],
                spec,
                sampled_in_topk=batch.in_topk[batch.steps(i)],
            )
            for i in rows
        ],
        columns=list(FEATURE_NAMES),
    )


def score(estimator, batch: LogprobBatch, source: str = "log") -> pd.DataFrame:
    """``batch.meta`` with the features, ``p_correct`` and ``row_estimate`` (its part of its
    slice's estimate, which is their mean) of every response it can score.

    Responses whose features are undefined (NaN or infinite) are dropped and counted in
    ``batch.skipped["undefined features"]``.
    """
    spec = estimator.feature_spec_
    check_scorable(estimator, batch, source)
    names = feature_names(estimator.features) or FEATURE_NAMES
    features = batch_features(batch, spec, answer=bool(set(names) & set(ANSWER_FEATURES)))
    defined = np.isfinite(features.to_numpy(dtype=np.float64)).all(axis=1)
    batch.skipped["undefined features"] = int((~defined).sum())
    lines = batch.meta["line"].to_numpy()[~defined][:EXAMPLES]
    batch.skipped_at["undefined features"] = [
        f"{source}:{line}: a feature is NaN or infinite (e.g. a log-prob of -inf)" for line in lines
    ]
    scored = pd.concat([batch.meta.reset_index(drop=True), features], axis=1)[defined]
    rows = scored[list(features.columns)]
    scored["p_correct"] = estimator.p_correct(rows) if len(scored) else []
    scored["row_estimate"] = estimator.row_estimates(rows) if len(scored) else []
    return scored.reset_index(drop=True)


def slice_table(
    estimator, scored: pd.DataFrame, under_shift: str | None = None
) -> tuple[pd.DataFrame, dict]:
    """Estimated accuracy, interval and regime per slice (and over all responses, slice
    ``*``), and each slice's regime evidence. A ``shifted`` slice's interval is widened or
    withheld (``under_shift``; default: the estimator's ``regime.under_shift``)."""
    rows, evidence = [], {}
    for name, group in scored.groupby("slice", sort=True):
        regime, evidence[name] = slice_regime(estimator, group)
        rows.append(_slice_row(estimator, name, group, regime, under_shift))
    states = {row["regime"] for row in rows}
    overall = SHIFTED if SHIFTED in states else (SAME if states == {SAME} else UNKNOWN)
    rows.append(_slice_row(estimator, "*", scored, overall, under_shift))
    return pd.DataFrame(rows), evidence


def _slice_row(estimator, name, group, regime: str, under_shift: str | None) -> dict:
    estimate = estimator.estimate_from_rows(group["row_estimate"]).as_dict()
    if estimator.regime_ is not None:
        estimate = estimator.regime_.adjust(estimate, regime, under_shift)
    return {"slice": name, **estimate, "regime": regime}


def slice_regime(estimator, group: pd.DataFrame) -> tuple[str, dict]:
    """``same``/``shifted``/``unknown`` for one slice's scored responses, with the evidence
    (estimate.regime); ``unknown`` for an estimator saved without its training regime."""
    if estimator.regime_ is None:
        return UNKNOWN, {"reason": "the estimator was saved without its training regime"}
    served = None
    if "settings" in group and group["settings"].notna().all():
        served = [json.loads(text) for text in group["settings"].unique()]
    return estimator.regime_.check(group, served)


def with_labels(
    table: pd.DataFrame, scored: pd.DataFrame, labels: pd.DataFrame, by=("slice",)
) -> pd.DataFrame:
    """Rows of ``table`` (one per ``by`` group of ``scored``, slice ``*`` for all slices) with
    labels (2 or more) get the PPI++ estimate and interval of their labels and predictions,
    with the label-free one beside it (``label_free_*``); the others keep the label-free one."""
    from entropy_sentinel.config.loading import schema_defaults
    from entropy_sentinel.estimate.labels import slice_intervals

    level = table["level"].dropna()  # the estimator's; without an interval, the schema's
    level = float(level.iloc[0]) if len(level) else schema_defaults("estimator")["interval_level"]
    expanded = pd.concat([scored, scored.assign(slice="*")], ignore_index=True)

    def key(frame: pd.DataFrame) -> pd.Series:
        return frame[list(by)].astype(str).agg("\x1f".join, axis=1)

    ppi = slice_intervals(expanded.assign(slice=key(expanded)), labels, alpha=1 - level)
    ppi = ppi.set_index("slice").reindex(key(table))
    out = table.copy()
    for column in ("point", "low", "high"):
        out[f"label_free_{column}"] = out[column]
    out["n_labels"] = ppi["n_labels"].fillna(0).astype(int).to_numpy()
    out["method"] = ppi["method"].to_numpy()
    labelled = out["method"].notna().to_numpy()
    for column in ("point", "low", "high"):
        out.loc[labelled, column] = ppi[column].to_numpy()[labelled]
    out.loc[labelled, "covers"] = (
        f"{level:.0%} prediction-powered (PPI++) interval for the accuracy from its labelled "
        "responses and the estimator's predictions of all of them"
    )
    return out
