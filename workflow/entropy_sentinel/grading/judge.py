"""Optional LLM judge with the original study's prompt, on any OpenAI-compatible endpoint.

Differences from the original, on purpose: the verdict is parsed as strict JSON (not a
substring test), an unparseable reply is recorded as ``unjudged`` (correct None) rather than
guessed, every verdict is cached by (item, response hash, judge model, prompt version), and
token usage and latency are recorded. Generation files are never modified.

Requests run ``concurrency`` at a time; each waits at most ``timeout_s`` and an item gets at
most ``ITEM_BUDGET_S`` in all, retries and backoff included, after which it stays unjudged
(``correct`` None, counted as ungraded by the summary).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from entropy_sentinel.config.loading import schema_defaults

SYSTEM_PROMPT = (
    "Task: determine if the response corresponds to the correct answer for the question, "
    "based on the given correct answer text. Answer only with the exact format: "
    '{"success": true} or {"success": false}'
)
USER_TEMPLATE = "# question\n{question}\n\n# response\n{response}\n\n# correct answer\n{reference}"
PROMPT_VERSION = "stem-judge/1"
GRADER_NAME = "llm_judge"
_STRIP_TOKENS = ("<|end|>", "<|endoftext|>")
_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
ITEM_BUDGET_S = 120.0  # all attempts on one item together


_DEFAULTS = schema_defaults("grading", "judge")


@dataclass(frozen=True)
class JudgeConfig:
    """Where and how to call the judge."""

    base_url: str  # e.g. "https://api.x.ai/v1" or "http://127.0.0.1:8000/v1"
    model: str
    api_key_env: str | None = _DEFAULTS["api_key_env"]
    cache_path: str | None = None  # a JSONL file of verdicts
    max_retries: int = _DEFAULTS["max_retries"]  # attempts per item
    backoff_s: float = _DEFAULTS["backoff_s"]  # the first wait; doubled after each failure
    timeout_s: float = _DEFAULTS["timeout_s"]  # per request; an item gets ITEM_BUDGET_S in all
    temperature: float | None = None  # None: the endpoint's default, as in the original
    concurrency: int = _DEFAULTS["concurrency"]  # requests in flight


@dataclass
class Verdict:
    """One judged response."""

    correct: bool | None
    status: str  # "judged", "unjudged" (reply not in the contract) or "error" (no reply)
    raw: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    attempts: int = 0
    cached: bool = False
    extra: dict = field(default_factory=dict)


def parse_verdict(content: str) -> bool | None:
    """True/False from a reply that is exactly ``{"success": <bool>}`` (code fences allowed)."""
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").strip()
        text = text[4:].strip() if text.lower().startswith("json") else text
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(data, dict) or set(data) != {"success"}:
        return None
    value = data["success"]
    return value if isinstance(value, bool) else None


def cache_key(item_id: str, response: str, model: str, prompt_version: str = PROMPT_VERSION) -> str:
    """The cache key of one verdict."""
    response_hash = hashlib.sha256(response.encode("utf-8", "replace")).hexdigest()
    return hashlib.sha256(
        f"{item_id}\x1f{response_hash}\x1f{model}\x1f{prompt_version}".encode()
    ).hexdigest()


class Judge:
    """Calls the judge, with retries and a verdict cache."""

    def __init__(self, config: JudgeConfig, sleep=time.sleep):
        self.config = config
        self.sleep = sleep
        self.cache: dict[str, dict] = {}
        self._lock = threading.Lock()
        if config.cache_path and Path(config.cache_path).exists():
            for line in Path(config.cache_path).read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.cache[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn last line from an interrupted run

    def messages(self, question: str, response: str, reference: str) -> list[dict]:
        """The original's two chat turns."""
        for token in _STRIP_TOKENS:
            response = response.replace(token, "")
        user = USER_TEMPLATE.format(question=question, response=response, reference=reference)
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def _post(self, payload: dict, timeout_s: float | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env or "", "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            self.config.base_url.rstrip("/") + "/chat/completions",
            data=json.dumps(payload).encode(),
            headers=headers,
            method="POST",
        )
        timeout = min(self.config.timeout_s, timeout_s or self.config.timeout_s)
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read().decode("utf-8"))

    def judge(self, item_id: str, question: str, response: str, reference: str) -> Verdict:
        """The verdict on one response (from the cache when it has been judged before)."""
        key = cache_key(item_id, response, self.config.model)
        if key in self.cache:
            entry = self.cache[key]
            return Verdict(**{**entry["verdict"], "cached": True})
        payload: dict = {
            "model": self.config.model,
            "messages": self.messages(question, response, reference),
        }
        if self.config.temperature is not None:
            payload["temperature"] = self.config.temperature
        verdict = Verdict(None, "error")
        started = time.monotonic()
        for attempt in range(1, self.config.max_retries + 1):
            start = time.perf_counter()
            remaining = ITEM_BUDGET_S - (time.monotonic() - started)
            if remaining <= 0:
                verdict = Verdict(None, "error", raw="item time budget spent", attempts=attempt)
                break
            try:
                body = self._post(payload, remaining)
                content = body["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as error:
                verdict = Verdict(None, "error", raw=f"HTTP {error.code}", attempts=attempt)
                if error.code not in _RETRY_STATUS:
                    break
            except (urllib.error.URLError, TimeoutError, OSError, ValueError, KeyError) as error:
                verdict = Verdict(None, "error", raw=type(error).__name__, attempts=attempt)
            else:
                usage = body.get("usage") or {}
                correct = parse_verdict(content)
                verdict = Verdict(
                    correct,
                    "judged" if correct is not None else "unjudged",
                    raw=content[:2000],
                    prompt_tokens=usage.get("prompt_tokens"),
                    completion_tokens=usage.get("completion_tokens"),
                    latency_s=time.perf_counter() - start,
                    attempts=attempt,
                )
                break
            if attempt < self.config.max_retries:
                spent = time.monotonic() - started
                self.sleep(min(self.config.backoff_s * 2 ** (attempt - 1), ITEM_BUDGET_S - spent))
        if verdict.status == "judged":
            self._store(key, item_id, verdict)
        return verdict

    def _store(self, key: str, item_id: str, verdict: Verdict) -> None:
        entry = {
            "key": key,
            "item_id": item_id,
            "model": self.config.model,
            "prompt_version": PROMPT_VERSION,
            "verdict": asdict(verdict),
        }
        with self._lock:
            self.cache[key] = entry
            if self.config.cache_path:
                path = Path(self.config.cache_path)
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry) + "\n")

    def judge_table(self, generations: pd.DataFrame, benchmark: pd.DataFrame) -> pd.DataFrame:
        """One row per generation, in the grade-table layout plus cost and latency columns."""
        items = benchmark.drop_duplicates("item_id").set_index("item_id")

        def one(item_id: str, response: str | None) -> Verdict:
            item = items.loc[item_id]
            meta = json.loads(item["metadata"]) if isinstance(item.get("metadata"), str) else {}
            reference = meta.get("judge_reference") or meta.get("solution") or item["reference"]
            return self.judge(item_id, item["question"], response or "", str(reference))

        pairs = list(zip(generations["item_id"], generations["response"], strict=True))
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            verdicts = list(pool.map(lambda pair: one(*pair), pairs))
        rows = []
        for (item_id, _), verdict in zip(pairs, verdicts, strict=True):
            rows.append(
                {
                    "item_id": item_id,
                    "correct": verdict.correct,
                    "extracted": None,
                    "reason": verdict.status,
                    "grader": GRADER_NAME,
                    "grader_version": f"{self.config.model}|{PROMPT_VERSION}",
                    "prompt_tokens": verdict.prompt_tokens,
                    "completion_tokens": verdict.completion_tokens,
                    "latency_s": verdict.latency_s,
                    "cached": verdict.cached,
                }
            )
        frame = pd.DataFrame(rows)
        if len(frame):
            frame["correct"] = frame["correct"].astype(object)
        return frame


def judge_ungraded(
    grades: pd.DataFrame,
    generations: pd.DataFrame,
    benchmark: pd.DataFrame,
    settings: dict,
    cache_path: str | None,
) -> tuple[pd.DataFrame, int]:
    """``grades`` with every row the rules left without a verdict sent to the judge
    (``settings``: config ``grading.judge``); returns the table and how many were sent.

    Rows whose generation failed are not sent: there is no response to judge. With
    ``answer_types`` set, only items of those types are sent.
    """
    answer_types = benchmark.drop_duplicates("item_id").set_index("item_id")["answer_type"]
    wanted = set(settings.get("answer_types") or [])
    pending = grades["correct"].isna() & ~grades["reason"].astype(str).str.startswith(
        "no verdict: generation error"
    )
    if wanted:
        pending &= grades["item_id"].map(answer_types).isin(wanted)
    if not pending.any():
        return grades, 0
    options = {k: settings[k] for k in _JUDGE_KEYS if k in settings}
    judge = Judge(JudgeConfig(**options, cache_path=cache_path))
    todo = generations.set_index("item_id").loc[grades.loc[pending, "item_id"]].reset_index()
    judged = judge.judge_table(todo[["item_id", "response"]], benchmark).set_index("item_id")
    out = grades.copy()
    for column in judged.columns:
        if column not in out.columns:
            out[column] = None
        out[column] = out[column].astype(object)
    rows = out.index[pending]
    for column in judged.columns:
        out.loc[rows, column] = judged.loc[out.loc[rows, "item_id"], column].to_numpy()
    out.loc[rows, "reason"] = "judge: " + judged.loc[out.loc[rows, "item_id"], "reason"].to_numpy()
    return out, int(pending.sum())


_JUDGE_KEYS = ("base_url", "model", "api_key_env", "max_retries", "backoff_s", "timeout_s")
_JUDGE_KEYS += ("temperature", "concurrency")
