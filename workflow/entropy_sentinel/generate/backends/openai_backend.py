"""The ``openai`` backend: any OpenAI-compatible server (vLLM ``serve``, SGLang, llama.cpp's
``llama-server``, TGI, OpenAI itself) through the official ``openai`` client.

Requests go out concurrently (``concurrency`` at a time, asyncio) with a per-request timeout,
and retries with exponential backoff on connection errors, timeouts, 408/409/429, 5xx and
bodies that are not JSON. Before any item, a start-up check (``GET /models`` and one short
request) waits for a server that is still starting, with backoff, up to
``startup_timeout_s``; then it fails with ``ServerUnavailable`` naming the URL and what the
server sent. Each item
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
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise

from entropy_sentinel.generate.backends.base import (
    DEFAULT_REASONING_MARKERS,
    GenerationSettings,
    error_row,
    item_seed,
    render_chat,
)

log = logging.getLogger(__name__)

ENDPOINTS = ("chat", "completions")
RETRY_STATUS = (408, 409, 429)  # and every 5xx


class ServerUnavailable(RuntimeError):
    """The start-up check found no usable server; the message says where and what it sent."""


class BadBody(ValueError):
    """A 2xx response whose body is not a JSON object (a proxy's page, a torn reply)."""


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
    # not in the config schema: a new key there would change every generate job's params
    startup_timeout_s: float = 120.0

    def __post_init__(self):
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"generation.openai.endpoint must be one of {ENDPOINTS}")
        problem = url_problem(self.base_url)
        if problem:
            raise ValueError(f"generation.openai.base_url: {problem}")

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
        """List the models and send one short request, retrying (a server still loading, a
        refused connection, a bad reply) with backoff until ``startup_timeout_s`` has passed."""
        o = self.options
        deadline = time.monotonic() + o.startup_timeout_s
        prompt = self.render_prompt([{"role": "user", "content": "Hi"}])
        attempt, problem = 0, "no attempt"
        while True:
            left = deadline - time.monotonic()
            client = self._client(timeout=max(0.1, min(o.timeout_s, left)))
            try:
                served = [m.id async for m in client.models.list()]
                body = await self._request(
                    client, "probe", self._payload("probe", prompt, 1), retries=0
                )
                return {
                    "served_models": served,
                    "server_model": body.get("model"),
                    "system_fingerprint": body.get("system_fingerprint"),
                }
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - reported below, with the URL
                problem = describe_error(error)
                if _status(error) is not None and not _retryable(error):
                    break  # 401, 404 ...: waiting does not help
            finally:
                await client.close()
            attempt += 1
            delay = min(o.backoff_s * 2 ** min(attempt, 6), 30.0, deadline - time.monotonic())
            if delay <= 0:
                break
            log.info("%s not ready (%s); retry %d in %.1fs", o.base_url, problem, attempt, delay)
            await asyncio.sleep(delay)
        raise ServerUnavailable(
            f"the server at {o.base_url} did not answer the start-up check (GET /models and one "
            f"request for model {o.model!r}) within {o.startup_timeout_s:.0f} s, "
            f"{attempt + 1} attempts; last: {problem}. Start the server, or fix "
            "generation.openai.base_url and model, then rerun"
        )

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

    def _client(self, timeout: float | None = None):
        from openai import AsyncOpenAI

        return AsyncOpenAI(
            base_url=self.options.base_url,
            api_key=self.api_key,
            timeout=self.options.timeout_s if timeout is None else timeout,
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
            log.warning("item %s failed: %s", item_id, describe_error(error))
            return error_row(item_id, describe_error(error))

    async def _request(self, client, item_id: str, payload: dict, retries: int | None = None):
        """The response body as a dict, after up to ``max_retries`` retries with backoff."""
        import openai

        retries = self.options.max_retries if retries is None else retries
        resource = client.chat.completions if "messages" in payload else client.completions
        extra_keys = set(payload) - _STANDARD_KEYS
        standard = {k: v for k, v in payload.items() if k not in extra_keys}
        extra = {k: payload[k] for k in extra_keys}
        for attempt in range(retries + 1):
            try:
                raw = await resource.with_raw_response.create(**standard, extra_body=extra or None)
                return _json_body(raw.http_response)
            except (openai.APIConnectionError, openai.APIStatusError, BadBody) as error:
                if not _retryable(error) or attempt == retries:
                    raise
                delay = self.options.backoff_s * 2**attempt * (0.5 + random.random() / 2)
                log.info(
                    "item %s: %s; retry %d in %.1fs",
                    item_id,
                    describe_error(error),
                    attempt + 1,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")


def _json_body(response) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BadBody(
            f"HTTP {response.status_code} with a body that is not a JSON object: "
            f"{_excerpt(response.text)}"
        )
    return body


def _status(error) -> int | None:
    return getattr(error, "status_code", None)


def _retryable(error) -> bool:
    """Connection errors, timeouts, bodies that are not JSON, 408/409/429 and 5xx."""
    status = _status(error)
    return status is None or status in RETRY_STATUS or status >= 500


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join((text or "").split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def url_problem(url) -> str | None:
    """Why ``url`` is not an http(s) URL of a server (None when it is one)."""
    from urllib.parse import urlsplit

    if not isinstance(url, str) or not url.strip():
        return f"{url!r} is not a URL; write it as http://HOST:PORT/v1"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as error:
        return f"{url!r} is not a valid URL ({error}); write it as http://HOST:PORT/v1"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL with a host; write it as http://HOST:PORT/v1"
    return None


def describe_error(error: BaseException) -> str:
    """One line: what the server sent (status and body excerpt) or why nothing came back."""
    import openai

    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}: {_excerpt(error.response.text)}"
    if isinstance(error, openai.APITimeoutError):
        return "the request timed out (no answer within the timeout)"
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error.__context__
        return f"Connection error: {cause or error}"
    return f"{type(error).__name__}: {error}" if not isinstance(error, BadBody) else str(error)


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
        tokens, ids, sampled, top_tokens, top_ids, top_lps = [], [], [], [], [], []
        has_ids = True
        for e in content:
            tokens.append(e["token"])
            sampled.append(float(e["logprob"]))
            top = e.get("top_logprobs") or []
            values = [float(t["logprob"]) for t in top]
            if any(a < b for a, b in pairwise(values)):  # servers need not sort them
                order = sorted(range(len(top)), key=values.__getitem__, reverse=True)
                top, values = [top[i] for i in order], [values[i] for i in order]
            top_lps.append(values)
            top_tokens.append([t["token"] for t in top])
            if has_ids:
                try:
                    ids.append(int(e["id"]))
                    top_ids.append([int(t["id"]) for t in top])
                except KeyError:
                    has_ids = False
        return TokenSteps(
            tokens=tokens,
            ids=ids if has_ids else None,
            sampled_logprobs=sampled,
            topk_tokens=top_tokens,
            topk_ids=top_ids if has_ids else None,
            topk_logprobs=top_lps,
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
