"""Which responses to label next, the CSV to fill in, and reading it back.

``propose`` picks ``per_slice`` responses of each slice, stratified by p(correct): the slice's
responses sorted by p are cut into ``per_slice`` contiguous bins of (nearly) equal size and
one response is drawn from each. Every response is then about equally likely to be chosen, so
the labelled ones are a fair sample of the slice, which PPI++ (``estimate.labels``) needs; the
spread over p makes that sample less noisy than a simple random one.

``read_labels`` reads the filled-in CSV: a bad row (unknown or repeated id, a value other
than 0/1) is counted and reported with its line, and skipped; an empty cell is not labelled
yet.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from entropy_sentinel.serve.logs import Skipped

STRATEGIES = ("stratified",)
REQUIRED = ("id", "slice", "p_correct")
CSV_COLUMNS = ("id", "slice", "p_correct", "correct")
SNIPPET = 200  # characters of the response shown to whoever labels it
TRUE, FALSE = {"1", "1.0", "true"}, {"0", "0.0", "false"}


def read_scored(path: str | Path) -> pd.DataFrame:
    """The scored responses of `entropy-sentinel score --out DIR` (DIR or its
    responses.parquet), checked for the columns a labelling plan needs."""
    path = Path(path)
    if path.is_dir():
        path = path / "responses.parquet"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file; give the folder `entropy-sentinel score --out DIR` wrote, "
            "or its responses.parquet"
        )
    frame = pd.read_parquet(path)
    missing = [c for c in REQUIRED if c not in frame]
    if missing:
        raise ValueError(
            f"{path}: no column {missing[0]!r} (has {', '.join(map(str, frame.columns))}); "
            "score the log with `entropy-sentinel score ... --out DIR` (add --id-field when "
            "the responses carry no id of their own)"
        )
    return frame


def propose(
    scored: pd.DataFrame, per_slice: int, strategy: str = "stratified", seed: int = 0
) -> tuple[pd.DataFrame, dict[str, int]]:
    """``per_slice`` responses of each slice to label (all of a smaller slice), with the
    CSV's columns (and a ``response`` snippet when the frame has the text); and the counts of
    responses left out (no id, no p, an id seen before)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if per_slice < 1:
        raise ValueError(f"--per-slice {per_slice}: label at least 1 response per slice")
    missing = [c for c in REQUIRED if c not in scored]
    if missing:
        raise ValueError(f"the scored responses have no column {missing[0]!r}")
    ids = scored["id"].astype("string").str.strip()
    no_id = ids.isna() | (ids == "")
    no_p = ~no_id & ~np.isfinite(pd.to_numeric(scored["p_correct"], errors="coerce"))
    repeated = ~no_id & ~no_p & ids.duplicated()
    skipped = {"no id": int(no_id.sum()), "no p_correct": int(no_p.sum())}
    skipped["repeated id"] = int(repeated.sum())
    rows = scored[~(no_id | no_p | repeated)].assign(id=ids)
    rng = np.random.default_rng(seed)
    chosen = []
    for _, group in rows.groupby("slice", sort=True):
        # a random order first, so ties in p fall into bins at random
        shuffled = group.iloc[rng.permutation(len(group))]
        order = np.argsort(shuffled["p_correct"].to_numpy(dtype=float), kind="stable")
        bins = np.array_split(order, min(per_slice, len(group)))
        picks = [b[rng.integers(len(b))] for b in bins]
        chosen.append(shuffled.iloc[picks])
    if not chosen:
        raise ValueError("no scorable responses with an id: nothing to label")
    plan = pd.concat(chosen, ignore_index=True)
    out = plan[["id", "slice", "p_correct"]].assign(correct="")
    if "response" in plan:
        out["response"] = plan["response"].astype("string").str.slice(0, SNIPPET)
    return out, skipped


def write_plan(plan: pd.DataFrame, out: str | Path, force: bool = False) -> Path:
    """The CSV to fill in; an existing file (maybe labels someone made) is kept unless
    ``force``."""
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(
            f"{out} exists (it may hold labels already made); name another file or pass --force"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    plan.to_csv(out, index=False, float_format="%.4f")
    return out


@dataclass
class LabelsRead(Skipped):
    """Labels read from a CSV: ``labels`` (id, correct as 0.0/1.0), how many rows were left
    unlabelled, and the bad rows (``Skipped``)."""

    labels: pd.DataFrame
    unlabelled: int = 0


def read_labels(
    path: str | Path, id_field: str = "id", label_field: str = "correct", known_ids=None
) -> LabelsRead:
    """The labels of a CSV (a header line, then one response a row): ``id_field`` names the
    response, ``label_field`` holds 1 (correct), 0 (wrong) or nothing (not labelled yet; true
    and false are read too). With ``known_ids``, an id not among them is a bad row."""
    path = Path(path)
    known = None if known_ids is None else {str(i) for i in known_ids}
    found = LabelsRead(pd.DataFrame(columns=["id", "correct"]))
    ids, values, first = [], [], {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for column, option in ((id_field, "--id-field"), (label_field, "--label-field")):
            if column not in header:
                raise ValueError(
                    f"{path}:1: no column {column!r} in the header ({', '.join(header) or 'empty'})"
                    f"; name the right one with {option}"
                )
        for record in reader:
            where = f"{path}:{reader.line_num}"
            key = (record.get(id_field) or "").strip()
            cell = (record.get(label_field) or "").strip().lower()
            if not key:
                found.skip("no id", f"{where}: the {id_field} cell is empty")
            elif known is not None and key not in known:
                found.skip("unknown id", f"{where}: {key!r} is not a scored response")
            elif key in first:
                found.skip("repeated id", f"{where}: {key!r} already on line {first[key]}")
            elif not cell:
                first[key] = reader.line_num
                found.unlabelled += 1
            elif cell not in TRUE | FALSE:
                found.skip(
                    "not 0/1", f"{where}: {label_field}={record[label_field]!r}, write 1 or 0"
                )
            else:
                first[key] = reader.line_num
                ids.append(key)
                values.append(1.0 if cell in TRUE else 0.0)
    found.labels = pd.DataFrame({"id": ids, "correct": values})
    return found
