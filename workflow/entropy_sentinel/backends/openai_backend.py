"""The ``openai`` backend: any OpenAI-compatible server (vLLM ``serve``, SGLang, llama.cpp's
``llama-server``, TGI, OpenAI itself) through the official ``openai`` client.

Requests go out concurrently (``concurrency`` at a time, asyncio) with a per-request timeout,
and retries with exponential backoff on connection errors, timeouts, 429 and 5xx. Each item
gets its own seed, derived from ``(seed, item_id)`` as in the transformers backend, so a
resumed or re-sharded run sends the same requests. Rows come out in the order they finish and
follow ``GENERATION_COLUMNS``; a request that still fails becomes an error row, which the next
run of the shard retries.

Log-probabilities are whatever the server returns for ``top_logprobs: k``; the user declares
which kind (``logprobs_mode``: vLLM ``--logprobs-mode raw_logprobs`` and llama-server give raw
ones, before temperature and top-p). Servers report no full-vocabulary entropy
(``full_entropy`` is null) and only some report token ids (llama-server does, as ``id``);
without ids ``token_ids``/``topk_token_ids`` are null and reasoning spans are found in the
token text. The API key is read from the environment variable ``api_key_env`` names, never
from a config file, and is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

from . import (
    DEFAULT_REASONING_MARKERS,
    GenerationSettings,
    error_row,
    item_seed,
    render_chat,
)

log = logging.getLogger(__name__)

ENDPOINTS = ("chat", "completions")
RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class ServerOptions:
    """Where and how to reach the server (config ``generation.openai``; defaults in the schema)."""

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    endpoint: str = "chat"
    concurrency: int = 8
    timeout_s: float = 300.0
    max_retries: int = 4
    backoff_s: float = 1.0
    per_item_seed: bool = True
    extra_body: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"generation.openai.endpoint must be one of {ENDPOINTS}")

    def api_key(self) -> str:
        """The key from the environment; servers that need none get a placeholder."""
        if self.api_key_env is None:
            return "unused"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise RuntimeError(
                f"generation.openai.api_key_env names {self.api_key_env!r}, which is not set in "
                "the environment. Export the key there, or set api_key_env: null for a server "
                "that needs none"
            )
        return key

    def public(self) -> dict:
        """Provenance: the options hold the key variable's name, never the key."""
        return asdict(self)


class OpenAIBackend:
    """Generate through an OpenAI-compatible HTTP API; rows match the other backends' schema."""

    name = "openai"

    def __init__(self, weights_dir: str | None, settings: GenerationSettings, options: dict):
        self.settings = settings
        self.options = ServerOptions(**options)
        self.api_key = self.options.api_key()
        self.markers = [tuple(m) for m in settings.reasoning_markers or DEFAULT_REASONING_MARKERS]
        self.tokenizer = None
        if self.options.endpoint == "completions":  # the chat template is applied here
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(
                weights_dir, trust_remote_code=settings.trust_remote_code
            )
        self._server: dict | None = None

    # ------------------------------------------------------------ prompts and provenance

    def render_prompt(self, messages: list[dict]):
        """Chat: the messages themselves (the server applies its template); completions: text."""
        if self.tokenizer is not None:
            return render_chat(self.tokenizer, messages, self.settings)
        if self.settings.system_prompt:
            return [{"role": "system", "content": self.settings.system_prompt}, *messages]
        return list(messages)

    def provenance(self) -> dict:
        """Settings plus what the server says about itself (one short probe request)."""
        if self._server is None:
            self._server = asyncio.run(self._probe())
        return {
            "backend": self.name,
            "engine_version": _version("openai"),
            "server": self.options.public(),
            **self._server,
            "logprobs_mode": self.settings.logprobs_mode,
            "logprobs_mode_declared_by": "user (generation.settings.logprobs_mode)",
            "topk_includes_sampled": False,
            "reasoning_markers": [list(m) for m in self.markers],
        }

    async def _probe(self) -> dict:
        client = self._client()
        try:
            served = [m.id async for m in client.models.list()]
            body = await self._request(
                client, "probe", self._payload("probe", [{"role": "user", "content": "Hi"}], 1)
            )
        finally:
            await client.close()
        return {
            "served_models": served,
            "server_model": body.get("model"),
            "system_fingerprint": body.get("system_fingerprint"),
        }

    # ------------------------------------------------------------ generation

    def stream(self, prompts: dict) -> Iterator[dict]:
        """Rows in the order requests finish, at most ``concurrency`` in flight."""
        loop = asyncio.new_event_loop()
        client = None
        pending: set[asyncio.Task] = set()
        try:
            client = self._client()
            todo = iter(prompts.items())
            while True:
                while len(pending) < self.options.concurrency:
                    nxt = next(todo, None)
                    if nxt is None:
                        break
                    pending.add(loop.create_task(self._one(client, *nxt)))
                if not pending:
                    break
                done, pending = loop.run_until_complete(
                    asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                )
                for task in done:
                    yield task.result()
        finally:  # a consumer that stops early cancels what is still in flight
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            if client is not None:
                loop.run_until_complete(client.close())
            loop.close()

    def generate(self, item_ids: Sequence[str], prompts: Sequence) -> list[dict]:
        """Rows for the given items, in the given order."""
        by_id = {r["item_id"]: r for r in self.stream(dict(zip(item_ids, prompts, strict=True)))}
        return [by_id[i] for i in item_ids]

    def _client(self):
        from openai import AsyncOpenAI

        return AsyncOpenAI(
            base_url=self.options.base_url,
            api_key=self.api_key,
            timeout=self.options.timeout_s,
            max_retries=0,  # retries are ours (_request), with the configured backoff
        )

    def _payload(self, item_id: str, prompt, max_tokens: int) -> dict:
        s, o = self.settings, self.options
        payload = {
            "model": o.model,
            "max_tokens": max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "logprobs": True if o.endpoint == "chat" else s.top_k_logprobs,
            **({"top_logprobs": s.top_k_logprobs} if o.endpoint == "chat" else {}),
        }
        if o.per_item_seed:
            payload["seed"] = item_seed(s.seed, item_id) % (1 << 31)
        key = "messages" if o.endpoint == "chat" else "prompt"
        payload[key] = prompt
        extra = dict(o.extra_body)
        template_kwargs = dict(s.extra.get("chat_template_kwargs", {}))
        if s.enable_thinking is not None:
            template_kwargs["enable_thinking"] = s.enable_thinking
        if template_kwargs and o.endpoint == "chat":
            extra["chat_template_kwargs"] = {
                **template_kwargs,
                **extra.get("chat_template_kwargs", {}),
            }
        return {**payload, **extra}

    async def _one(self, client, item_id: str, prompt) -> dict:
        try:
            payload = self._payload(item_id, prompt, self.settings.max_new_tokens)
            body = await self._request(client, item_id, payload)
            return convert_response(item_id, body, self.settings, self.markers)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - one bad item must not lose the shard
            log.warning("item %s failed: %s", item_id, error)
            return error_row(item_id, error)

    async def _request(self, client, item_id: str, payload: dict) -> dict:
        """The response body as a dict, after up to ``max_retries`` retries with backoff."""
        import openai

        resource = client.chat.completions if "messages" in payload else client.completions
        extra_keys = set(payload) - _STANDARD_KEYS
        standard = {k: v for k, v in payload.items() if k not in extra_keys}
        extra = {k: payload[k] for k in extra_keys}
        for attempt in range(self.options.max_retries + 1):
            try:
                raw = await resource.with_raw_response.create(**standard, extra_body=extra or None)
                return raw.http_response.json()
            except (openai.APIConnectionError, openai.APIStatusError) as error:
                status = getattr(error, "status_code", None)
                retryable = status is None or status in RETRY_STATUS
                if not retryable or attempt == self.options.max_retries:
                    raise
                delay = self.options.backoff_s * 2**attempt * (0.5 + random.random() / 2)
                log.info("item %s: %s; retry %d in %.1fs", item_id, error, attempt + 1, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")


_STANDARD_KEYS = {
    "model",
    "messages",
    "prompt",
    "max_tokens",
    "temperature",
    "top_p",
    "logprobs",
    "top_logprobs",
    "seed",
}


# ---------------------------------------------------------------- response parsing


@dataclass
class TokenSteps:
    """Per-token log-probabilities of one completion, as the server returned them."""

    tokens: list[str]
    ids: list[int] | None
    sampled_logprobs: list[float]
    topk_tokens: list[list[str]]
    topk_ids: list[list[int]] | None
    topk_logprobs: list[list[float]]


def token_steps(choice: dict) -> TokenSteps | None:
    """The steps of one response choice (chat, llama-server completions, or legacy layout);
    None when the choice carries no log-probabilities."""
    logprobs = choice.get("logprobs")
    if not logprobs:
        return None
    if logprobs.get("content") is not None:  # chat layout (llama-server uses it for both)
        content = logprobs["content"]
        tokens = [e["token"] for e in content]
        has_ids = all("id" in e for e in content) and all(
            "id" in t for e in content for t in e.get("top_logprobs") or []
        )
        ranked = [sorted(e.get("top_logprobs") or [], key=lambda t: -t["logprob"]) for e in content]
        return TokenSteps(
            tokens=tokens,
            ids=[int(e["id"]) for e in content] if has_ids else None,
            sampled_logprobs=[float(e["logprob"]) for e in content],
            topk_tokens=[[t["token"] for t in r] for r in ranked],
            topk_ids=[[int(t["id"]) for t in r] for r in ranked] if has_ids else None,
            topk_logprobs=[[float(t["logprob"]) for t in r] for r in ranked],
        )
    if logprobs.get("tokens") is not None:  # legacy completions: top_logprobs are dicts
        tops = [sorted((d or {}).items(), key=lambda kv: -kv[1]) for d in logprobs["top_logprobs"]]
        return TokenSteps(
            tokens=list(logprobs["tokens"]),
            ids=None,
            sampled_logprobs=[float(x) for x in logprobs["token_logprobs"]],
            topk_tokens=[[t for t, _ in top] for top in tops],
            topk_ids=None,
            topk_logprobs=[[float(lp) for _, lp in top] for top in tops],
        )
    return None


def convert_response(item_id: str, body: dict, settings: GenerationSettings, markers) -> dict:
    """One chat or completions response body as a row of ``GENERATION_COLUMNS``."""
    choice = body["choices"][0]
    steps = token_steps(choice)
    if steps is None:
        raise ValueError("the response has no logprobs: the server ignored logprobs/top_logprobs")
    k = settings.top_k_logprobs
    short = [t for t, top in enumerate(steps.topk_logprobs) if len(top) < k]
    if short:
        t = short[0]
        raise ValueError(
            f"the server returned {len(steps.topk_logprobs[t])} top log-probs at step {t}, "
            f"fewer than top_k_logprobs={k}; raise its limit (vLLM: --max-logprobs {k})"
        )
    topk_lps = [top[:k] for top in steps.topk_logprobs]
    if steps.ids is not None:
        topk_ids = [top[:k] for top in steps.topk_ids]
        in_topk = [i in top for i, top in zip(steps.ids, topk_ids, strict=True)]
    else:
        topk_ids = None
        in_topk = [tok in top[:k] for tok, top in zip(steps.tokens, steps.topk_tokens, strict=True)]
    message = choice.get("message") or {}
    text = message.get("content") if "message" in choice else choice.get("text")
    # Servers that parse the thinking out (vLLM --reasoning-parser, llama-server
    # --reasoning-format, SGLang) send it apart; keep the whole response, as the other backends do.
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        open_text, close_text = markers[0] if markers else DEFAULT_REASONING_MARKERS[0]
        text = f"{open_text}{reasoning}{close_text}{text or ''}"
    usage = body.get("usage") or {}
    return {
        "item_id": item_id,
        "prompt_tokens": usage.get("prompt_tokens"),
        "response": text or "",
        "token_ids": steps.ids,
        "sampled_logprobs": steps.sampled_logprobs,
        "topk_token_ids": topk_ids,
        "topk_logprobs": topk_lps,
        "full_entropy": None,
        "n_tokens": len(steps.tokens),
        "finish_reason": "length" if choice.get("finish_reason") == "length" else "stop",
        "error": None,
        "sampled_in_topk": in_topk,
        "is_reasoning": text_reasoning_mask(steps.tokens, markers),
        "logprobs_mode": settings.logprobs_mode,
    }


def text_reasoning_mask(tokens: Sequence[str], markers) -> list[bool]:
    """Per token: does it overlap a reasoning span (markers included) of the joined text?

    An unclosed span runs to the end. Works on token text, so it needs no tokenizer.
    """
    text = "".join(tokens)
    spans = []
    for open_text, close_text in markers:
        start = text.find(open_text)
        while start >= 0:
            close = text.find(close_text, start + len(open_text))
            end = len(text) if close < 0 else close + len(close_text)
            spans.append((start, end))
            start = text.find(open_text, end)
    flags, offset = [], 0
    for token in tokens:
        lo, hi = offset, offset + max(len(token), 1)
        flags.append(any(s < hi and lo < e for s, e in spans))
        offset += len(token)
    return flags


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None
