"""Entropy profiles, the 17 features (standard and paper definitions), segments and the
feature spec, against hand computations, scipy and a torch transliteration of the reference."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from entropy_sentinel.features.compute import (
    ALL_FEATURES,
    FEATURE_NAMES,
    FEATURE_SETS,
    FeatureSpec,
    compute_features,
    feature_table,
    read_feature_spec,
    response_features,
)
from entropy_sentinel.features.entropy import MissingFullEntropyError, entropy_profile, stack_steps
from entropy_sentinel.provenance import read_provenance, write_parquet

WORKFLOW = Path(__file__).resolve().parents[1] / "workflow"


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
    assert stack_steps(
        np.array([np.array([0.0, -1.0]), np.array([-2.0, -3.0])], dtype=object)
    ).shape == (2, 2)
    with pytest.raises(ValueError, match=r"vary in width across steps: \[1, 3\]"):
        stack_steps([[-0.1, -0.2, -0.3], [-0.1]])
    with pytest.raises(ValueError, match="variant"):
        entropy_profile(logp, "nope")


def test_topk_sampled_adds_the_sampled_token_only_where_it_is_outside_the_topk():
    topk = np.log(np.array([[0.5, 0.2], [0.6, 0.3]]))
    sampled = np.log(np.array([0.2, 0.05]))  # step 0: the 2nd top token; step 1: outside
    in_topk = np.array([True, False])
    plain = entropy_profile(topk)
    with_sampled = entropy_profile(
        topk, "topk_sampled", sampled_logprobs=sampled, sampled_in_topk=in_topk
    )
    assert plain[0] == pytest.approx(-(0.5 * math.log(0.5) + 0.2 * math.log(0.2)))
    assert with_sampled[0] == plain[0]  # agree where the sampled token is a top-k token
    assert with_sampled[1] == pytest.approx(plain[1] - 0.05 * math.log(0.05))
    assert with_sampled[1] > plain[1]
    with pytest.raises(ValueError, match="sampled_in_topk"):
        entropy_profile(topk, "topk_sampled", sampled_logprobs=sampled)


def test_variants_order_on_a_known_full_distribution():
    # a real 50-token distribution, its top-5, and a sampled token from the tail
    probs = np.sort(np.random.default_rng(1).dirichlet(np.full(50, 0.3)))[::-1]
    logp = np.log(probs)
    full = -(probs * logp).sum()
    topk = logp[None, :5]
    kw = {"sampled_logprobs": logp[[30]], "sampled_in_topk": [False], "full_entropy": [full]}
    h_topk = entropy_profile(topk, **kw)[0]
    h_sampled = entropy_profile(topk, "topk_sampled", **kw)[0]
    h_full = entropy_profile(topk, "full", **kw)[0]
    assert h_topk < h_sampled < h_full == pytest.approx(full)
    assert entropy_profile(topk, "topk_renormalised")[0] < math.log(5) + 1e-12


def test_full_entropy_null_is_an_error_not_a_fallback():
    topk = np.log(np.array([[0.5, 0.2]]))
    with pytest.raises(MissingFullEntropyError, match="full_entropy.*vLLM"):
        entropy_profile(topk, "full", full_entropy=None)
    with pytest.raises(MissingFullEntropyError, match="1 of 2 steps"):
        entropy_profile(topk, "full", full_entropy=[0.3, None])


def test_standard_features_match_scipy_and_numpy():
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
    # why 14D exists: under these definitions lntp and mtp are monotone in nll_avg and nll_max
    assert f["lntp"] == pytest.approx(1 / f["ppl"])
    assert f["mtp"] == pytest.approx(math.exp(-f["nll_max"]))


def test_paper_features_by_hand():
    # reference §4.2 on p = [0.2, 0.4, 1.0, 0.6], nll = [0.1, 0.5, 2.0, 0.05]
    p = [0.2, 0.4, 1.0, 0.6]
    nll = [0.1, 0.5, 2.0, 0.05]
    f = compute_features(np.array(p), -np.array(nll), "paper")
    centred = [-0.35, -0.15, 0.45, 0.05]  # p - 0.55
    std = math.sqrt(sum(c**2 for c in centred) / 3)  # unbiased: 0.35 / 3
    expected = {
        "mean": 0.55,
        "std": math.sqrt(0.35 / 3),
        "max": 1.0,
        "q10": 0.26,  # sorted [0.2, 0.4, 0.6, 1.0], position 0.3
        "q25": 0.35,  # position 0.75
        "q50": 0.5,
        "q75": 0.7,  # position 2.25
        "q90": 0.88,  # position 2.7
        "skewness": (sum(c**3 for c in centred) / 4) / (std**3 + 1e-8),
        "kurtosis": (sum(c**4 for c in centred) / 4) / (std**4 + 1e-8),  # non-excess
        "se_sum": 2.2,
        "nll_avg": 0.6625,
        "nll_max": 2.0,
        "nll_sum": 2.65,
        "lntp": sum(x * math.log(x + 1e-8) for x in nll),
        "mtp": 2.0 * math.log(2.0 + 1e-8),
        "ppl": math.exp(0.6625),
    }
    assert std == pytest.approx(expected["std"])
    for name in FEATURE_NAMES:
        assert f[name] == pytest.approx(expected[name], rel=2e-6, abs=1e-7), name
    standard = compute_features(np.array(p), -np.array(nll))
    assert standard["std"] == pytest.approx(math.sqrt(0.35 / 4))  # the definitions differ
    assert standard["lntp"] == pytest.approx(math.exp(-0.6625))


def test_paper_features_short_and_flat_profiles():
    one = compute_features(np.array([0.7]), np.array([-0.1]), "paper")
    assert math.isnan(one["std"]) and math.isnan(one["skewness"]) and math.isnan(one["kurtosis"])
    assert one["mean"] == pytest.approx(0.7) and one["q90"] == pytest.approx(0.7)
    flat = compute_features(np.full(3, 0.25), np.array([0.0, -0.5, -0.5]), "paper")
    assert flat["std"] == 0 and flat["skewness"] == 0 and flat["kurtosis"] == 0  # +1e-8
    # nll = 0 gives 0 * log(1e-8) = 0, which is the max: the other terms are negative
    assert flat["mtp"] == 0.0
    assert flat["lntp"] == pytest.approx(2 * 0.5 * math.log(0.5), rel=1e-6)
    with pytest.raises(ValueError, match="definitions"):
        compute_features(np.array([0.1]), np.array([-0.1]), "nope")


def test_paper_features_match_a_torch_transliteration_of_the_reference():
    torch = pytest.importorskip("torch", reason="torch is a core dependency; absent only if broken")
    rng = np.random.default_rng(3)
    for steps in (2, 7, 300):
        profile = rng.gamma(1.5, 0.6, size=steps)
        logprobs = -rng.exponential(0.8, size=steps)
        p = torch.tensor(profile, dtype=torch.float32)
        nll = -torch.tensor(logprobs, dtype=torch.float32)
        mean, std = p.mean(), torch.std(p)
        ref = [mean, std, p.max()]
        ref += [torch.quantile(p, q) for q in (0.1, 0.25, 0.5, 0.75, 0.9)]
        ref += [((p - mean) ** 3).mean() / (std**3 + 1e-8)]
        ref += [((p - mean) ** 4).mean() / (std**4 + 1e-8)]
        ref += [p.sum(), nll.mean(), nll.max(), nll.sum()]
        ref += [(nll * torch.log(nll + 1e-8)).sum(), (nll * torch.log(nll + 1e-8)).max()]
        ref += [torch.exp(nll.mean())]
        ours = compute_features(profile, logprobs, "paper")
        for name, value in zip(FEATURE_NAMES, ref, strict=True):
            assert ours[name] == pytest.approx(float(value), rel=2e-6, abs=1e-6), (steps, name)


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
    assert FEATURE_SETS["14D"] == FEATURE_NAMES[:14]
    assert set(FEATURE_NAMES) - set(FEATURE_SETS["14D"]) == {"lntp", "mtp", "ppl"}
    assert list(FEATURE_SETS) == [
        "17D",
        "14D",
        "10D",
        "3D",
        "1D",
        "14D+answer",
        "3D+answer",
        "answer",
    ]
    assert FEATURE_SETS["14D+answer"][:14] == FEATURE_SETS["14D"]
    for names in FEATURE_SETS.values():
        assert set(names) <= set(ALL_FEATURES)


def _response(steps=5):
    """One response: top-3 log-probs per step, 2 reasoning steps then 3 answer steps."""
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.ones(6), size=steps)
    probs.sort(axis=1)
    topk = np.log(probs[:, ::-1][:, :3])
    sampled = topk[:, 0].copy()
    sampled[[1, 3]] = np.log(probs[[1, 3], 0])  # the least likely token, outside the top-3
    in_topk = np.array([True, False, True, False, True])
    return {
        "topk_logprobs": topk,
        "sampled_logprobs": sampled,
        "sampled_in_topk": in_topk,
        "is_reasoning": np.array([True, True, False, False, False]),
        "full_entropy": -(probs * np.log(probs)).sum(axis=1),
    }


def test_response_features_select_the_segment():
    r = _response()
    kw = {k: r[k] for k in ("full_entropy", "is_reasoning", "sampled_in_topk")}
    for segment, steps in (
        ("all", slice(None)),
        ("reasoning", slice(0, 2)),
        ("answer", slice(2, 5)),
    ):
        for variant in ("topk", "topk_sampled", "full"):
            spec = FeatureSpec(entropy=variant, segment=segment, definitions="paper")
            got = response_features(r["topk_logprobs"], r["sampled_logprobs"], spec, **kw)
            profile = entropy_profile(
                r["topk_logprobs"][steps],
                variant,
                sampled_logprobs=r["sampled_logprobs"][steps],
                sampled_in_topk=r["sampled_in_topk"][steps],
                full_entropy=r["full_entropy"][steps],
            )
            assert got == compute_features(profile, r["sampled_logprobs"][steps], "paper")
    answer = response_features(
        r["topk_logprobs"], r["sampled_logprobs"], FeatureSpec(segment="answer"), **kw
    )
    everything = response_features(r["topk_logprobs"], r["sampled_logprobs"], **kw)
    assert answer["nll_sum"] < everything["nll_sum"]  # fewer steps
    assert answer["nll_sum"] == pytest.approx(-r["sampled_logprobs"][2:].sum())


def test_empty_segment_gives_nan_and_missing_column_is_an_error():
    r = _response()
    no_reasoning = np.zeros(5, dtype=bool)
    reasoning = FeatureSpec(segment="reasoning")
    got = response_features(
        r["topk_logprobs"], r["sampled_logprobs"], reasoning, is_reasoning=no_reasoning
    )
    assert all(math.isnan(v) for v in got.values())
    with pytest.raises(ValueError, match="is_reasoning"):
        response_features(r["topk_logprobs"], r["sampled_logprobs"], reasoning)
    with pytest.raises(ValueError, match="is_reasoning has 4 steps but the response has 5"):
        response_features(
            r["topk_logprobs"], r["sampled_logprobs"], reasoning, is_reasoning=[True] * 4
        )
    with pytest.raises(ValueError, match="topk_logprobs has 4 steps but sampled_logprobs 5"):
        response_features(r["topk_logprobs"][:4], r["sampled_logprobs"])


def test_variants_differ_only_where_they_should():
    r = _response()
    kw = {k: r[k] for k in ("full_entropy", "is_reasoning", "sampled_in_topk")}

    def feats(entropy, segment="all"):
        spec = FeatureSpec(entropy=entropy, segment=segment)
        return response_features(r["topk_logprobs"], r["sampled_logprobs"], spec, **kw)

    topk, sampled, full = feats("topk"), feats("topk_sampled"), feats("full")
    assert sampled["se_sum"] > topk["se_sum"] and full["se_sum"] > sampled["se_sum"]
    for name in ("nll_avg", "nll_max", "nll_sum", "lntp", "mtp", "ppl"):
        assert topk[name] == sampled[name] == full[name]  # log-prob features ignore the entropy
    # the answer steps 2 and 4 have the sampled token inside the top-k, step 3 outside
    answer_topk, answer_sampled = feats("topk", "answer"), feats("topk_sampled", "answer")
    assert answer_sampled["se_sum"] - answer_topk["se_sum"] == pytest.approx(
        -math.exp(r["sampled_logprobs"][3]) * r["sampled_logprobs"][3]
    )


def test_feature_spec_validates_and_round_trips():
    spec = FeatureSpec()
    assert spec.as_dict() == {
        "definitions": "standard",
        "entropy": "topk",
        "segment": "all",
        "k": None,
        "logprobs_mode": None,
    }
    full = FeatureSpec(definitions="paper", entropy="full", segment="answer", k=20)
    assert FeatureSpec.from_dict(json.loads(json.dumps(full.as_dict()))) == full
    with pytest.raises(ValueError, match=r"'entropy' is 'exact'; allowed: 'topk', 'topk_sampled'"):
        FeatureSpec.from_dict({"entropy": "exact"})
    with pytest.raises(ValueError, match="'segment'.*'answer'"):
        FeatureSpec.from_dict({"segment": "thinking"})
    with pytest.raises(ValueError, match="'k'"):
        FeatureSpec(k=0)
    with pytest.raises(ValueError, match="'logprobs_mode'"):
        FeatureSpec(logprobs_mode="post")
    with pytest.raises(ValueError, match=r"unknown feature spec keys \['entropie'\]"):
        FeatureSpec.from_dict({"entropie": "topk"})


def test_feature_spec_mismatch_text_and_unknowns():
    trained = FeatureSpec(entropy="topk", k=20, logprobs_mode="raw")
    rows = FeatureSpec(entropy="full", k=5, logprobs_mode=None)
    assert trained.mismatches(rows) == [
        "entropy: estimator trained on 'topk', rows computed with 'full'",
        "k: estimator trained on 20, rows computed with 5",
    ]
    assert trained.mismatches(FeatureSpec()) == []  # unknown k/logprobs_mode never differ
    assert FeatureSpec(segment="answer").mismatches(FeatureSpec()) == [
        "segment: estimator trained on 'answer', rows computed with 'all'"
    ]


def _generations():
    return pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "response": ["So \\boxed{4}", "Let me think", ""],
            "topk_logprobs": [[[-0.1, -2.5]] * 3, [[-1.0, -1.2]] * 2, []],
            "sampled_logprobs": [[-0.1] * 3, [-1.0, -1.2], []],
            "full_entropy": [[0.5] * 3, [1.5, 1.6], None],
            "sampled_in_topk": [[True] * 3, [True, True], []],
            "is_reasoning": [[True, False, False], [False, False], []],
            "n_tokens": [3, 2, 0],
            "finish_reason": ["stop", "length", "error"],
            "logprobs_mode": ["raw", "raw", None],
        }
    )


_BENCHMARK = pd.DataFrame(
    {"item_id": ["a", "b", "c"], "benchmark": "x", "domain": ["d1", "d2", "d2"]}
)
_GRADES = pd.DataFrame({"item_id": ["a", "b", "c"], "correct": [True, False, None]})
_SPLIT = {"train": ["a", "c"], "test": ["b"]}


def test_feature_table_joins_grades_split_and_slices():
    generations = _generations().drop(columns=["full_entropy", "is_reasoning", "logprobs_mode"])
    table = feature_table(generations, _GRADES, _BENCHMARK, _SPLIT)
    assert list(table["split"]) == ["train", "test", "train"]
    assert list(table["truncated"]) == [False, True, False]
    assert table.loc[0, "mean"] == pytest.approx(entropy_profile(np.array([[-0.1, -2.5]]))[0])
    assert math.isnan(table.loc[2, "mean"])


def test_feature_table_uses_the_spec():
    generations = _generations()
    answer = feature_table(generations, _GRADES, _BENCHMARK, _SPLIT, FeatureSpec(segment="answer"))
    assert list(answer["segment_tokens"]) == [2, 2, 0]
    assert answer.loc[0, "nll_sum"] == pytest.approx(0.2)  # the 2 answer steps of item a
    full = feature_table(generations, _GRADES, _BENCHMARK, _SPLIT, FeatureSpec(entropy="full"))
    assert full.loc[1, "se_sum"] == pytest.approx(3.1)
    vllm_like = generations.assign(full_entropy=[None, None, None])
    with pytest.raises(MissingFullEntropyError, match=r"null in 2 of 3 responses.*'a'.*vLLM"):
        feature_table(vllm_like, _GRADES, _BENCHMARK, _SPLIT, FeatureSpec(entropy="full"))


def test_spec_for_rows_reads_k_and_logprobs_mode_and_refuses_disagreement():
    generations = _generations()
    assert FeatureSpec().for_rows(generations) == FeatureSpec(k=2, logprobs_mode="raw")
    mixed = generations.assign(logprobs_mode=["raw", "processed", None])
    with pytest.raises(ValueError, match="disagree on logprobs_mode: 'raw' in 1 rows"):
        FeatureSpec().for_rows(mixed)
    ragged = generations.assign(topk_logprobs=[[[-0.1, -2.5]] * 3, [[-1.0]] * 2, []])
    with pytest.raises(ValueError, match="disagree on k"):
        FeatureSpec().for_rows(ragged)
    with pytest.raises(ValueError, match="k=20 but the rows have 2"):
        feature_table(generations, _GRADES, _BENCHMARK, _SPLIT, FeatureSpec(k=20))


def _run_features_script(tmp_path, spec: dict, generations=None, backend="transformers") -> Path:
    """Run the features rule's script as Snakemake would, on a tiny (model, benchmark)."""
    shard = tmp_path / "shard-0.parquet"
    rows = _generations() if generations is None else generations
    write_parquet(rows, shard, {"backend": backend})
    _GRADES.to_parquet(tmp_path / "grades.parquet")
    _BENCHMARK.to_parquet(tmp_path / "benchmark.parquet")
    (tmp_path / "split.json").write_text(json.dumps(_SPLIT))
    output = tmp_path / f"features-{len(list(tmp_path.glob('features-*')))}.parquet"
    driver = textwrap.dedent(
        f"""
        import runpy, types
        from snakemake.io import Namedlist
        ns = types.SimpleNamespace
        snakemake = ns(  # the attributes of Snakemake's script object that the script reads
            input=Namedlist(fromdict=dict(
                shards=[{str(shard)!r}], retries=[],
                grades={str(tmp_path / "grades.parquet")!r},
                benchmark={str(tmp_path / "benchmark.parquet")!r},
                split={str(tmp_path / "split.json")!r})),
            output=[{str(output)!r}], log=[{str(tmp_path / "features.log")!r}],
            params=ns(spec={spec!r}), wildcards=ns(model="tiny", benchmark="x"),
        )
        runpy.run_path({str(WORKFLOW / "scripts" / "features.py")!r},
                       init_globals={{"snakemake": snakemake}})
        """
    )
    subprocess.run(
        [sys.executable, "-c", driver],
        check=True,
        env={**os.environ, "PYTHONPATH": str(WORKFLOW)},
        capture_output=True,
    )
    return output


def test_features_script_stores_the_spec_and_read_feature_spec_checks_it(tmp_path):
    config = {"definitions": "paper", "entropy": "topk_sampled", "segment": "answer"}
    first = _run_features_script(tmp_path, config)
    stored = read_provenance(first)["feature_spec"]
    assert stored == {**config, "k": 2, "logprobs_mode": "raw"}
    assert read_feature_spec(first) == FeatureSpec(**stored)
    assert read_feature_spec([first, str(first)]) == FeatureSpec(**stored)
    table = pd.read_parquet(first)
    assert table.loc[table["item_id"] == "a", "nll_sum"].item() == pytest.approx(0.2)

    second = _run_features_script(tmp_path, {**config, "entropy": "topk"})
    with pytest.raises(
        ValueError, match=rf"entropy: 'topk_sampled' in {first}; 'topk' in {second}"
    ):
        read_feature_spec([first, second])
    legacy = tmp_path / "legacy.parquet"
    write_parquet(table, legacy, {"entropy": "topk"})
    with pytest.raises(ValueError, match=rf"no 'feature_spec' in the provenance of {legacy}"):
        read_feature_spec([first, legacy])


def test_features_script_names_backend_when_full_entropy_is_missing(tmp_path):
    vllm_rows = _generations().assign(full_entropy=None)
    with pytest.raises(subprocess.CalledProcessError) as failure:
        _run_features_script(tmp_path, {"entropy": "full"}, vllm_rows, backend="vllm")
    stderr = failure.value.stderr.decode()
    assert "MissingFullEntropyError" in stderr and "generation backend: vllm" in stderr
    assert "full_entropy column, which is null in 2 of 3 responses" in stderr
    assert "generation backend: vllm" in (tmp_path / "features.log").read_text()  # traceback


def test_config_schema_fills_feature_defaults_and_rejects_bad_values():
    import yaml
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(WORKFLOW / "schemas" / "config.schema.yaml")
    config = yaml.safe_load((WORKFLOW.parent / "config" / "config.yaml").read_text())
    del config["features"]
    validate(config, schema)  # the rule reads config["features"]: the schema supplies it
    assert FeatureSpec.from_dict(config["features"]) == FeatureSpec()
    config["features"] = {"entropy": "topk_sampled"}
    validate(config, schema)
    assert config["features"] == {
        "definitions": "standard",
        "entropy": "topk_sampled",
        "segment": "all",
    }
    config["features"] = {"segment": "thinking"}
    with pytest.raises(WorkflowError, match="'thinking' is not one of"):
        validate(config, schema)


def test_answer_features_cover_the_stated_answer_span():
    from entropy_sentinel.features.compute import ANSWER_FEATURES, answer_span

    generations = _generations().drop(columns=["full_entropy", "is_reasoning", "logprobs_mode"])
    table = feature_table(generations, _GRADES, _BENCHMARK, _SPLIT).set_index("item_id")
    assert list(table["answer_stated"]) == [1.0, 0.0, 0.0]
    assert list(table["truncated_flag"]) == [0.0, 1.0, 0.0]
    assert table.loc["a", "log_tokens"] == pytest.approx(np.log(4))
    # "\\boxed{4}" is 9 of 12 characters: the last ceil(0.75 * 3) = 3 steps
    assert table.loc["a", "answer_nll_mean"] == pytest.approx(0.1)
    assert table.loc["b", "answer_nll_max"] == pytest.approx(1.2)  # no answer: the tail
    assert table.loc["c", ANSWER_FEATURES[1:4]].isna().all()
    assert answer_span("x" * 90 + "\\boxed{12}", 50) == (5, True)
    assert answer_span("The answer is 7.\n", 40) == (40, True)
    assert answer_span("7 apples " * 30, 60) == (8, False)
