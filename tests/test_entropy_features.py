"""Entropy profiles and the 17 features against hand computations and scipy."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from entropy_sentinel.entropy import entropy_profile, stack_steps
from entropy_sentinel.features import FEATURE_NAMES, FEATURE_SETS, compute_features, feature_table


def test_entropy_of_uniform_topk_is_log_k_when_it_holds_all_mass():
    k = 20
    logp = np.full((3, k), -math.log(k))
    assert np.allclose(entropy_profile(logp), math.log(k))


def test_entropy_is_not_renormalised_by_default():
    # two tokens of probability 0.25 each; the other half of the mass is outside the top-k
    logp = np.log(np.array([[0.25, 0.25]]))
    assert entropy_profile(logp)[0] == pytest.approx(2 * 0.25 * math.log(4))
    assert entropy_profile(logp, "topk_renormalised")[0] == pytest.approx(math.log(2))


def test_entropy_ignores_minus_infinity_and_handles_empty():
    logp = np.array([[0.0, -np.inf, -np.inf]])
    assert entropy_profile(logp)[0] == 0.0
    assert entropy_profile(np.zeros((0, 20))).shape == (0,)
    assert entropy_profile(stack_steps([])).shape == (0,)
    with pytest.raises(ValueError, match="variant"):
        entropy_profile(logp, "nope")


def test_features_match_scipy_and_numpy():
    rng = np.random.default_rng(0)
    profile = rng.gamma(2.0, 0.5, size=50)
    logprobs = -rng.exponential(0.7, size=50)
    f = compute_features(profile, logprobs)
    assert list(f) == list(FEATURE_NAMES) and len(f) == 17
    assert f["mean"] == pytest.approx(profile.mean())
    assert f["std"] == pytest.approx(profile.std(ddof=0))
    assert f["q25"] == pytest.approx(np.quantile(profile, 0.25))
    assert f["skewness"] == pytest.approx(stats.skew(profile))
    assert f["kurtosis"] == pytest.approx(stats.kurtosis(profile))  # excess, as scipy
    assert f["se_sum"] == pytest.approx(profile.sum())
    assert f["nll_sum"] == pytest.approx(-logprobs.sum())
    assert f["lntp"] == pytest.approx(math.exp(logprobs.mean()))
    assert f["mtp"] == pytest.approx(math.exp(logprobs.min()))
    assert f["ppl"] == pytest.approx(math.exp(-logprobs.mean()))


def test_one_token_and_empty_responses_are_guarded():
    one = compute_features(np.array([0.7]), np.array([-0.1]))
    assert all(math.isfinite(v) for v in one.values())
    assert one["std"] == 0 and one["skewness"] == 0 and one["kurtosis"] == 0
    empty = compute_features(np.array([]), np.array([]))
    assert all(math.isnan(v) for v in empty.values())
    with pytest.raises(ValueError, match="steps"):
        compute_features(np.array([0.1, 0.2]), np.array([-0.1]))


def test_feature_sets_are_subsets_in_order():
    assert FEATURE_SETS["17D"] == FEATURE_NAMES
    assert FEATURE_SETS["10D"] == FEATURE_NAMES[:10]
    for names in FEATURE_SETS.values():
        assert set(names) <= set(FEATURE_NAMES)


def test_feature_table_joins_grades_split_and_slices():
    generations = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "topk_logprobs": [[[-0.1, -2.5]] * 3, [[-1.0, -1.2]] * 2, []],
            "sampled_logprobs": [[-0.1] * 3, [-1.0, -1.2], []],
            "n_tokens": [3, 2, 0],
            "finish_reason": ["stop", "length", "error"],
        }
    )
    benchmark = pd.DataFrame(
        {"item_id": ["a", "b", "c"], "benchmark": "x", "domain": ["d1", "d2", "d2"]}
    )
    grades = pd.DataFrame({"item_id": ["a", "b", "c"], "correct": [True, False, None]})
    table = feature_table(generations, grades, benchmark, {"train": ["a", "c"], "test": ["b"]})
    assert list(table["split"]) == ["train", "test", "train"]
    assert list(table["truncated"]) == [False, True, False]
    assert table.loc[0, "mean"] == pytest.approx(entropy_profile(np.array([[-0.1, -2.5]]))[0])
    assert math.isnan(table.loc[2, "mean"])
