"""Optional LLM judge with the original study's prompt, on any OpenAI-compatible endpoint.

Differences from the original, on purpose: the verdict is parsed as strict JSON (not a
substring test), an unparseable reply is recorded as ``unjudged`` (correct None) rather than
guessed, every verdict is cached by (item, response hash, judge model, prompt version), and
token usage and latency are recorded. Generation files are never modified.

Requests go through the ``openai`` client, ``concurrency`` at a time (asyncio): each waits at
most ``timeout_s``; the client retries connection errors, timeouts, 408/409/429 and 5xx with
its own backoff (0.5 s doubling, at most 8 s) up to ``max_retries`` attempts in all; an item
gets at most ``ITEM_BUDGET_S``, retries included, after which it stays unjudged (``correct``
None, counted as ungraded by the summary).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
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
    attempts: int = 0  # requests sent, retries included (0: not known, on errors)
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
    """Calls the judge, with the client's retries and a verdict cache."""

    def __init__(self, config: JudgeConfig):
        self.config = config
        self.cache: dict[str, dict] = {}
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

    def _client(self):
        from openai import AsyncOpenAI

        return AsyncOpenAI(
            base_url=self.config.base_url,
            # the client insists on a key; an endpoint without one ignores the header
            api_key=os.environ.get(self.config.api_key_env or "", "") or "none",
            timeout=self.config.timeout_s,
            max_retries=self.config.max_retries - 1,  # the schema counts attempts
        )

    def judge(self, item_id: str, question: str, response: str, reference: str) -> Verdict:
        """The verdict on one response (from the cache when it has been judged before)."""
        return self._run([(item_id, question, response, reference)])[0]

    def _run(self, items: list[tuple[str, str, str, str]]) -> list[Verdict]:
        async def run_all() -> list[Verdict]:
            gate = asyncio.Semaphore(max(1, self.config.concurrency))
            async with self._client() as client:

                async def one(item):
                    async with gate:
                        return await self._judge(client, *item)

                return await asyncio.gather(*(one(item) for item in items))

        return asyncio.run(run_all())

    async def _judge(self, client, item_id, question, response, reference) -> Verdict:
        import openai

        key = cache_key(item_id, response, self.config.model)
        if key in self.cache:
            return Verdict(**{**self.cache[key]["verdict"], "cached": True})
        extra = {}
        if self.config.temperature is not None:
            extra["temperature"] = self.config.temperature
        start = time.perf_counter()
        try:
            raw = await asyncio.wait_for(
                client.chat.completions.with_raw_response.create(
                    model=self.config.model,
                    messages=self.messages(question, response, reference),
                    **extra,
                ),
                ITEM_BUDGET_S,
            )
            body = raw.http_response.json()
            content = body["choices"][0]["message"]["content"] or ""
        except TimeoutError:
            return Verdict(None, "error", raw="item time budget spent")
        except openai.APIStatusError as error:
            return Verdict(None, "error", raw=f"HTTP {error.status_code}")
        except (openai.APIConnectionError, ValueError, KeyError, TypeError, IndexError) as error:
            return Verdict(None, "error", raw=type(error).__name__)
        usage = body.get("usage") or {}
        correct = parse_verdict(content)
        verdict = Verdict(
            correct,
            "judged" if correct is not None else "unjudged",
            raw=content[:2000],
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_s=time.perf_counter() - start,
            attempts=raw.retries_taken + 1,
        )
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
        self.cache[key] = entry  # one event loop: no lock needed
        if self.config.cache_path:
            path = Path(self.config.cache_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")

    def judge_table(self, generations: pd.DataFrame, benchmark: pd.DataFrame) -> pd.DataFrame:
        """One row per generation, in the grade-table layout plus cost and latency columns."""
        items = benchmark.drop_duplicates("item_id").set_index("item_id")

        def request(item_id: str, response: str | None) -> tuple[str, str, str, str]:
            item = items.loc[item_id]
            meta = json.loads(item["metadata"]) if isinstance(item.get("metadata"), str) else {}
            reference = meta.get("judge_reference") or meta.get("solution") or item["reference"]
            return item_id, item["question"], response or "", str(reference)

        pairs = list(zip(generations["item_id"], generations["response"], strict=True))
        verdicts = self._run([request(*pair) for pair in pairs])
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


_JUDGE_KEYS = ("base_url", "model", "api_key_env", "max_retries", "timeout_s")
_JUDGE_KEYS += ("temperature", "concurrency")
