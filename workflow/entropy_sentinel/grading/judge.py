"""Optional LLM judge with the original study's prompt, on any OpenAI-compatible endpoint.

Differences from the original, on purpose: the verdict is parsed as strict JSON (not a
substring test), an unparseable reply is recorded as ``unjudged`` (correct None) rather than
guessed, every verdict is cached by (item, response hash, judge model, prompt version), and
token usage and latency are recorded. Generation files are never modified.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

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


@dataclass(frozen=True)
class JudgeConfig:
    """Where and how to call the judge."""

    base_url: str  # e.g. "https://api.x.ai/v1" or "http://127.0.0.1:8000/v1"
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    cache_path: str | None = None  # a JSONL file of verdicts
    max_retries: int = 6
    backoff_s: float = 1.0  # the first wait; doubled after each failed attempt
    timeout_s: float = 120.0
    temperature: float | None = None  # None: the endpoint's default, as in the original


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

    def _post(self, payload: dict) -> dict:
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
        with urllib.request.urlopen(request, timeout=self.config.timeout_s) as reply:
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
        for attempt in range(1, self.config.max_retries + 1):
            start = time.perf_counter()
            try:
                body = self._post(payload)
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
                self.sleep(self.config.backoff_s * 2 ** (attempt - 1))
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
        self.cache[key] = entry
        if self.config.cache_path:
            path = Path(self.config.cache_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")

    def judge_table(self, generations: pd.DataFrame, benchmark: pd.DataFrame) -> pd.DataFrame:
        """One row per generation, in the grade-table layout plus cost and latency columns."""
        items = benchmark.drop_duplicates("item_id").set_index("item_id")
        rows = []
        for item_id, response in zip(generations["item_id"], generations["response"], strict=True):
            item = items.loc[item_id]
            meta = json.loads(item["metadata"]) if isinstance(item.get("metadata"), str) else {}
            reference = meta.get("judge_reference") or meta.get("solution") or item["reference"]
            verdict = self.judge(item_id, item["question"], response or "", str(reference))
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
        frame["correct"] = frame["correct"].astype(object)
        return frame
