"""The regime check (estimate.regime): settings compared key by key, the feature-support test
against held-out training slices, the verdict, and the widening's testbed origin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from entropy_sentinel.config.loading import schema_defaults
from entropy_sentinel.estimate.regime import (
    SAME,
    SHIFTED,
    UNKNOWN,
    FeatureSupport,
    TrainingRegime,
    compare_settings,
    settings_from_generation,
    settings_from_request,
    verdict,
)

REPO = Path(__file__).resolve().parents[1]
TESTBED = REPO / "data/studies/testbed-qwen05b"
TRAFFIC = REPO / "data/studies/testbed-traffic"


def test_request_and_config_settings_compare_key_by_key():
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q"}],
        "temperature": 0.5,
        "top_p": 0.95,
        "max_tokens": 512,
        "top_logprobs": 20,
        "logprobs": True,
    }
    served = settings_from_request(body)
    generation = {
        "settings": {"temperature": 0.5, "top_p": 0.95, "max_new_tokens": 512,
                     "top_k_logprobs": 20, "system_prompt": "Be brief."},
    }  # fmt: skip
    trained = settings_from_generation(generation)
    assert compare_settings(trained, [served]) == (SAME, {})
    # a sampler key the request leaves to the server's default is a difference, not a match
    state, differ = compare_settings(trained, [{**served, "min_p": 0.05, "max_tokens": 256.0}])
    assert state == SHIFTED and differ == {"min_p": [None, [0.05]], "max_tokens": [512.0, [256.0]]}
    other_prompt = settings_from_request({**body, "messages": body["messages"][1:]})
    assert compare_settings(trained, [other_prompt])[1]["system_prompt_sha256"][1] == [None]
    # mixed traffic: every distinct value is listed
    state, differ = compare_settings(trained, [served, {**served, "temperature": 1.0}])
    assert state == SHIFTED and differ["temperature"] == [0.5, [0.5, 1.0]]
    assert compare_settings(None, [served])[0] == UNKNOWN
    assert compare_settings(trained, None)[0] == UNKNOWN
    # the openai backend's extra_body sends the server's sampler keys
    extra = {**generation, "openai": {"extra_body": {"top_k": 40, "min_p": 0.05}}}
    assert settings_from_generation(extra)["top_k"] == 40 and settings_from_generation({}) is None


def test_verdict_needs_matching_settings_to_say_same():
    assert verdict(SAME, SAME) == SAME and verdict(SAME, UNKNOWN) == SAME
    assert verdict(UNKNOWN, SAME) == UNKNOWN  # features alone cannot vouch (testbed: 0 of 8)
    assert verdict(SHIFTED, SAME) == SHIFTED and verdict(SAME, SHIFTED) == SHIFTED


def test_feature_support_flags_traffic_outside_the_training_slices():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 0.7, size=(6, 3))  # slices overlap, as on the testbed
    X = np.vstack([rng.normal(c, 1, size=(60, 3)) for c in centres])
    slices = np.repeat(np.arange(6), 60)
    support = FeatureSupport.fit(X, slices, ["a", "b", "c"], min_rows=20)
    assert len(support.slice_shares) == 6 and 0 <= support.threshold < 1
    inside = rng.normal(centres[2], 1, size=(40, 3))
    far = rng.normal(centres.mean(0) + 25, 1, size=(40, 3))
    assert support.check(inside)[0] == SAME
    state, evidence = support.check(far)
    assert state == SHIFTED and evidence["outside_share"] == 1.0
    assert support.check(far[:5])[0] == UNKNOWN  # fewer than min_rows
    restored = FeatureSupport.from_parts(
        json.loads(json.dumps(support.as_dict())), support.arrays()
    )
    assert restored.check(far) == support.check(far)


def test_a_shifted_slice_is_widened_or_withheld():
    support = FeatureSupport(["a"], np.zeros(1), np.ones(1), np.zeros((3, 1)), 1.0, [0.1], 0.95, 2)
    regime = TrainingRegime(None, support, "widen", 0.05)
    estimate = {"point": 0.5, "low": 0.4, "high": 0.98, "covers": "90 % interval", "n": 9}
    assert regime.adjust(estimate, SAME) == estimate
    widened = regime.adjust(estimate, SHIFTED)
    assert widened["low"] == pytest.approx(0.35) and widened["high"] == 1.0
    assert "widened by 0.05" in widened["covers"]
    withheld = regime.adjust(estimate, SHIFTED, "withhold")
    assert np.isnan(withheld["low"]) and withheld["point"] == 0.5


@pytest.mark.skipif(not TRAFFIC.is_dir(), reason="the committed testbed study is absent")
def test_widen_by_default_is_what_the_shift_cost_on_the_testbed():
    """estimator.regime.widen_by: the most a traffic-regime slice's error exceeded its
    interval's half-width for the default readout (ATC on the classifier's p), rounded up."""
    transfer = pd.read_csv(TRAFFIC / "transfer-from-testbed-qwen05b.csv")
    default = transfer[transfer["estimator"] == "ATC[ES p]"]
    excess = (default["point"] - default["true"]).abs() - (default["high"] - default["low"]) / 2
    cost = float(excess.clip(lower=0).max())
    widen_by = schema_defaults("estimator", "regime")["widen_by"]
    assert cost <= widen_by < cost + 0.01


@pytest.mark.slow
@pytest.mark.skipif(not TRAFFIC.is_dir(), reason="the committed testbed study is absent")
def test_committed_regime_study_reproduces():
    """`study regime` on the testbed: the committed false-alarm and detection rates."""
    from entropy_sentinel.evaluate.study import regime_study

    table, rates = regime_study(TESTBED, TRAFFIC)
    committed = json.loads((TRAFFIC / "regime-from-testbed-qwen05b.json").read_text())
    assert rates == pytest.approx(committed["shifted_share"])
    assert rates["target settings"] == 1.0 and rates["source both"] <= 0.1
