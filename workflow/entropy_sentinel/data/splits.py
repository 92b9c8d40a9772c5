"""Deterministic train/test splits of item ids (the caller persists them as JSON)."""

from __future__ import annotations

import random
from collections.abc import Iterable


def make_split(
    item_ids: Iterable[str],
    test_fraction: float = 0.2,
    seed: int = 42,
    strata: Iterable[str] | None = None,
) -> dict[str, list[str]]:
    """Split ids into ``train`` and ``test``; the result does not depend on the input order.

    With ``strata`` (one label per id, e.g. the domain) each stratum is split on its own, so
    every slice keeps its share of test items.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], not {test_fraction}")
    item_ids = list(map(str, item_ids))
    labels = [""] * len(item_ids) if strata is None else list(map(str, strata))
    if len(labels) != len(item_ids):
        raise ValueError(f"{len(labels)} strata for {len(item_ids)} item ids")
    groups: dict[str, set[str]] = {}
    for item_id, label in zip(item_ids, labels, strict=True):
        groups.setdefault(label, set()).add(item_id)
    test: set[str] = set()
    for label in sorted(groups):
        shuffled = sorted(groups[label])
        random.Random(f"{seed}:{label}").shuffle(shuffled)
        test.update(shuffled[: round(len(shuffled) * test_fraction)])
    ids = sorted(set(item_ids))
    return {
        "train": [i for i in ids if i not in test],
        "test": [i for i in ids if i in test],
    }
