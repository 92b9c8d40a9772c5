"""Deterministic train/test splits of item ids (the caller persists them as JSON)."""

from __future__ import annotations

import random
from collections.abc import Iterable


def make_split(
    item_ids: Iterable[str], test_fraction: float = 0.2, seed: int = 42
) -> dict[str, list[str]]:
    """Split ids into ``train`` and ``test``; the result does not depend on the input order."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], not {test_fraction}")
    ids = sorted(set(map(str, item_ids)))
    shuffled = ids[:]
    random.Random(seed).shuffle(shuffled)
    n_test = round(len(ids) * test_fraction)
    test = set(shuffled[:n_test])
    return {
        "train": [i for i in ids if i not in test],
        "test": [i for i in ids if i in test],
    }
