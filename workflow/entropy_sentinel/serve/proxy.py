"""``entropy-sentinel proxy``: an OpenAI-compatible pass-through that scores every response.

Chat and completions requests (streamed or not) go to the upstream with top-k log-probs
requested; the client gets what it asked for (log-probs stripped, or cut to its own
``top_logprobs``, when it asked for fewer). After a response has gone to the client, a
background worker scores it: ``logs.response_batch`` parses it as a traffic log's line is
parsed, ``scoring.score`` computes its features and p(correct); one record per response goes
to the rotating feature log (``feature_log``), never its log-probs. ``/metrics`` serves, per
slice, the rolling-window estimate with its interval (widened or withheld when the window's
regime is shifted), the regime (estimate.regime, over the window's responses), response
counts, the truncation rate and latency histograms.

The client's request never breaks on the proxy's account: upstream errors and status codes
pass through unchanged, a silent upstream is a 504 and an unreachable one a 502 (an OpenAI
error body saying so), and a scoring failure is counted and logged, never returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pandas as pd
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from entropy_sentinel.estimate.regime import settings_from_request
from entropy_sentinel.features.compute import ANSWER_FEATURES, FEATURE_NAMES
from entropy_sentinel.serve.feature_log import FeatureLog, records
from entropy_sentinel.serve.logs import _get, _slice_label, response_batch
from entropy_sentinel.serve.scoring import score, slice_regime

log = logging.getLogger("entropy_sentinel.proxy")

DEFAULT_K = 20  # an estimator that does not record its top-k width: the project's k
UNKNOWN_REGIME = "unknown"
# hop-by-hop headers and those the proxy recomputes; never forwarded either way
_DROP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
_DROP |= {"accept-encoding", "content-encoding", "upgrade", "te", "trailer"}
# what of a request the feature log keeps: its generation settings
SETTINGS = ("model", "temperature", "top_p", "top_k", "min_p", "seed", "max_tokens")
SETTINGS += ("max_completion_tokens", "n", "stream", "presence_penalty", "frequency_penalty")
LINGER_S = 0.25  # the scorer waits this long for more responses (the window lags by as much)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)


@dataclass
class ProxyConfig:
    upstream: str  # the server's root URL; a trailing /v1 is dropped
    estimator: Path
    log_dir: Path
    slice_header: str | None = None
    slice_field: str | None = None  # dotted path in the request body, e.g. metadata.tenant
    window_s: float = 3600.0
    rotate_bytes: int = 64 << 20
    upstream_timeout_s: float = 600.0
    logprobs_mode: str | None = None  # None: the estimator's


@dataclass
class Pending:
    """A response waiting to be scored."""

    response: dict
    slice: str
    time: float
    settings: dict


@dataclass
class Window:
    """A slice's scored responses of the rolling window: (time, row estimate, truncated)."""

    rows: deque = field(default_factory=deque)

    def prune(self, oldest: float) -> None:
        while self.rows and self.rows[0][0] < oldest:
            self.rows.popleft()


class Sentinel:
    """The proxy's state: the estimator, the pooled upstream client, metrics and the log."""

    def __init__(self, config: ProxyConfig, estimator):
        self.config, self.estimator = config, estimator
        spec = estimator.feature_spec_
        self.k = spec.k or DEFAULT_K
        self.logprobs_mode = config.logprobs_mode or spec.logprobs_mode
        if spec.logprobs_mode and self.logprobs_mode != spec.logprobs_mode:
            raise ValueError(
                f"--logprobs-mode {self.logprobs_mode}: the estimator was trained on "
                f"{spec.logprobs_mode} log-probs; their entropies are not comparable. Serve "
                f"{spec.logprobs_mode} log-probs or use an estimator trained on "
                f"{self.logprobs_mode} ones"
            )
        if spec.entropy == "full":
            raise ValueError(
                "the estimator uses full-vocabulary entropy, which servers do not report; use "
                "one trained with features.entropy: topk or topk_sampled"
            )
        upstream = config.upstream.rstrip("/")
        self.upstream = upstream.removesuffix("/v1")
        self.windows: dict[str, Window] = {}
        self.regimes: dict[str, str] = {}
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=100_000)
        self.client: httpx.AsyncClient | None = None
        self.worker: asyncio.Task | None = None
        served = {**spec.as_dict(), "k": self.k, "logprobs_mode": self.logprobs_mode}
        self.log = FeatureLog(
            config.log_dir,
            {
                "feature_spec": served,
                "estimator": str(config.estimator),
                "upstream": self.upstream,
            },
            config.rotate_bytes,
        )
        self.registry = CollectorRegistry()
        labels = ("slice", "endpoint", "stream")
        self.responses = Counter(
            "entropy_sentinel_responses",
            "responses relayed to clients, by upstream HTTP status (504/502: the proxy's own)",
            (*labels, "code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "entropy_sentinel_request_seconds",
            "time from the client's request to the last byte of the response",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_byte = Histogram(
            "entropy_sentinel_first_byte_seconds",
            "time from the client's request to the upstream's response headers",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.scored = Counter(
            "entropy_sentinel_scored", "responses scored", ("slice",), registry=self.registry
        )
        self.unscored = Counter(
            "entropy_sentinel_unscored",
            "responses not scored, by reason (no log-probs, an error body, ...)",
            ("reason",),
            registry=self.registry,
        )
        self.failures = Counter(
            "entropy_sentinel_scoring_failures",
            "scoring batches that raised (their responses are unscored; see the proxy's log)",
            ("reason",),
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "entropy_sentinel_upstream_errors",
            "requests the upstream did not answer (timeout, connection) or broke off mid-stream",
            ("slice", "kind"),
            registry=self.registry,
        )
        self.scoring_seconds = Histogram(
            "entropy_sentinel_scoring_seconds",
            "time to score one batch of responses (off the request path)",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
            registry=self.registry,
        )
        self.registry.register(_WindowCollector(self))

    # ---------------------------------------------------------------- regime

    @property
    def regime_columns(self) -> list[str]:
        """What a window keeps of each response for the regime check: settings and features."""
        regime = self.estimator.regime_
        return ["settings", *(regime.support.columns if regime else [])]

    def window_regime(self, name: str, window: Window, estimate: dict) -> dict:
        """The window's regime (estimate.regime, as ``score`` checks a slice) into
        ``entropy_sentinel_regime``, and its estimate widened or withheld when shifted."""
        regime = self.estimator.regime_
        if regime is None:
            return estimate
        frame = pd.DataFrame([r for *_, r in window.rows], columns=self.regime_columns)
        self.regimes[name], _ = slice_regime(self.estimator, frame)
        return regime.adjust(estimate, self.regimes[name])

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.client = httpx.AsyncClient(
            base_url=self.upstream,
            timeout=httpx.Timeout(self.config.upstream_timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
        )
        self.worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        """Score what is queued, flush and close the feature log, close the client."""
        if self.worker is not None:
            await self.queue.put(None)
            await self.worker
        self.log.close()
        if self.client is not None:
            await self.client.aclose()

    # ---------------------------------------------------------------- scoring

    def submit(self, pending: Pending) -> None:
        try:
            self.queue.put_nowait(pending)
        except asyncio.QueueFull:
            self.unscored.labels("scoring backlog full").inc()

    async def _work(self) -> None:
        while True:
            items = [await self.queue.get()]
            if items[0] is not None:  # let a batch gather: one response costs 8x more alone
                await asyncio.sleep(LINGER_S)
            while not self.queue.empty() and len(items) < 256:
                items.append(self.queue.get_nowait())
            stop = None in items
            items = [item for item in items if item is not None]
            if items:
                await self._score(items)
            if stop:
                return

    async def _score(self, items: list[Pending]) -> None:
        began = time.perf_counter()
        try:
            rows, skipped = await asyncio.to_thread(self._score_batch, items)
        except Exception as error:  # never the client's problem: counted and logged
            self.failures.labels(type(error).__name__).inc()
            log.exception("scoring %d responses failed", len(items))
            return
        self.scoring_seconds.observe(time.perf_counter() - began)
        for reason, n in skipped.items():
            if n:
                self.unscored.labels(reason).inc(n)
        oldest = time.time() - self.config.window_s
        for slice_, when, row, truncated, regime in rows:
            self.scored.labels(slice_).inc()
            for name in (slice_, "*"):
                window = self.windows.setdefault(name, Window())
                window.rows.append((when, row, truncated, regime))
                window.prune(oldest)  # memory: the window's responses, a few numbers each

    def _score_batch(self, items: list[Pending]):
        """Features, p(correct) and row estimates of ``items`` (in a thread), written to the
        feature log; the window rows and the skipped counts come back."""
        batch = response_batch(
            [
                (p.response, p.slice, p.time, p.response.get("id"), _canonical(p.settings))
                for p in items
            ],
            self.k,
            self.logprobs_mode,
        )
        if not len(batch):
            return [], batch.skipped
        scored = score(self.estimator, batch, "proxy")
        names = [c for c in scored.columns if c in FEATURE_NAMES or c in ANSWER_FEATURES]
        self.log.write(records(scored, names, [p.settings for p in items]))
        truncated = scored["finish_reason"].eq("length").to_numpy()
        times = [items[int(line) - 1].time for line in scored["line"]]
        regime = self.regime_columns
        rows = list(
            zip(
                scored["slice"], times, scored["row_estimate"].to_numpy(), truncated,
                scored[regime].itertuples(index=False, name=None), strict=True,
            )
        )  # fmt: skip
        return rows, batch.skipped

    # ---------------------------------------------------------------- requests

    def slice_of(self, request: Request, body: dict) -> str:
        if self.config.slice_header:
            return _slice_label(request.headers.get(self.config.slice_header))
        if self.config.slice_field:
            return _slice_label(_get(body, self.config.slice_field))
        return "all"

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Send, once more when a pooled connection was closed under it (llama-server closes
        keep-alive connections after a stream; the request never reached it)."""
        try:
            return await self.client.send(request, stream=True)
        except httpx.RemoteProtocolError as error:
            if "without sending a response" not in str(error):
                raise
            return await self.client.send(request, stream=True)

    async def generate(self, request: Request) -> Response:
        began, now = time.perf_counter(), time.time()
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):  # the upstream says what is wrong with it
            return await self.passthrough(request, raw)
        endpoint = "chat" if request.url.path.endswith("chat/completions") else "completions"
        wanted = _wanted(body, endpoint)
        upstream_body = dict(body)
        if endpoint == "chat":
            upstream_body.update(logprobs=True, top_logprobs=max(self.k, wanted or 0))
        else:
            upstream_body["logprobs"] = max(self.k, wanted or 0)
        trim = None if wanted is not None and wanted >= self.k else (wanted, endpoint)
        stream = bool(body.get("stream"))
        slice_ = self.slice_of(request, body)
        labels = (slice_, endpoint, str(stream).lower())
        settings = {key: body[key] for key in SETTINGS if key in body}
        # the regime check's keys (estimate.regime), top_logprobs as the upstream was asked
        settings |= settings_from_request(body) | {"top_logprobs": float(max(self.k, wanted or 0))}
        settings["endpoint"] = endpoint
        outgoing = self.client.build_request(
            request.method,
            request.url.path,
            params=request.url.query,
            headers=_forward(request.headers),
            content=orjson.dumps(upstream_body),
        )
        try:
            upstream = await self.send(outgoing)
        except httpx.HTTPError as error:
            return self._unanswered(error, labels, began)
        self.first_byte.labels(*labels).observe(time.perf_counter() - began)
        kind = upstream.headers.get("content-type", "")
        if upstream.status_code != 200 or not (
            "json" in kind or "event-stream" in kind
        ):  # an error or something unknown: as it came
            return self._relay(upstream, labels, began)
        headers = _backward(upstream.headers)
        if "event-stream" in kind:
            relay = self._relay_events(upstream, trim, labels, began, (slice_, now, settings))
            return StreamingResponse(relay, upstream.status_code, headers)
        try:
            content = await upstream.aread()
        except httpx.HTTPError as error:
            return self._unanswered(error, labels, began)
        finally:
            await upstream.aclose()
        self.responses.labels(*labels, "200").inc()
        self.latency.labels(*labels).observe(time.perf_counter() - began)
        try:
            response = orjson.loads(content)
        except orjson.JSONDecodeError:
            return Response(content, upstream.status_code, headers)
        if isinstance(response, dict):
            self.submit(Pending(response, slice_, now, settings))
            if trim is not None:
                content = orjson.dumps(_trimmed(response, *trim))
        return Response(content, upstream.status_code, headers)

    def _unanswered(self, error: httpx.HTTPError, labels, began: float) -> JSONResponse:
        timeout = isinstance(error, httpx.TimeoutException)
        kind = "timeout" if timeout else type(error).__name__
        self.upstream_errors.labels(labels[0], kind).inc()
        status = 504 if timeout else 502
        self.responses.labels(*labels, str(status)).inc()
        self.latency.labels(*labels).observe(time.perf_counter() - began)
        what = (
            f"the upstream did not answer within {self.config.upstream_timeout_s:g} s"
            if timeout
            else f"the upstream could not be reached ({kind}: {error})"
        )
        log.warning("%s %s", labels, what)
        body = {"error": {"message": f"entropy-sentinel proxy: {what}", "type": "upstream_error",
                          "code": status}}  # fmt: skip
        return JSONResponse(body, status)

    def _relay(self, upstream: httpx.Response, labels, began: float) -> StreamingResponse:
        """The upstream's response as it came (status, headers, bytes)."""

        async def chunks():
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            except httpx.HTTPError as error:
                self.upstream_errors.labels(labels[0], type(error).__name__).inc()
            finally:
                await upstream.aclose()
                self.responses.labels(*labels, str(upstream.status_code)).inc()
                self.latency.labels(*labels).observe(time.perf_counter() - began)

        headers = _backward(upstream.headers)
        if "content-encoding" in upstream.headers:  # raw bytes: keep saying how they are encoded
            headers["content-encoding"] = upstream.headers["content-encoding"]
        return StreamingResponse(chunks(), upstream.status_code, headers)

    async def _relay_events(self, upstream: httpx.Response, trim, labels, began, pending):
        """Server-sent events to the client as they arrive (trimmed where asked); the stream
        gathered on the side and queued for scoring once it ends."""
        gathered = _Gathered()
        buffer = b""
        try:
            async for chunk in upstream.aiter_bytes():
                buffer += chunk
                *events, buffer = _split_events(buffer)
                out = [_event(event, gathered, trim) for event in events]
                if out:
                    yield b"".join(out)
            if buffer:
                yield _event(buffer, gathered, trim)
        except httpx.HTTPError as error:  # the headers are sent: the stream just ends
            self.upstream_errors.labels(labels[0], type(error).__name__).inc()
            log.warning("%s stream broken off: %s", labels, error)
        finally:
            await upstream.aclose()
            self.responses.labels(*labels, str(upstream.status_code)).inc()
            self.latency.labels(*labels).observe(time.perf_counter() - began)
        if gathered.chunks:
            slice_, now, settings = pending
            self.submit(Pending(gathered.response(), slice_, now, settings))

    async def passthrough(self, request: Request, raw: bytes | None = None) -> Response:
        """Any other request (``/v1/models``, a body that is not JSON, ...): as it is, both ways."""
        began = time.perf_counter()
        if raw is None:
            raw = await request.body()
        outgoing = self.client.build_request(
            request.method,
            request.url.path,
            params=request.url.query,
            headers=_forward(request.headers),
            content=raw,
        )
        labels = ("-", "other", "false")  # not the path: clients choose it (label cardinality)
        try:
            upstream = await self.send(outgoing)
        except httpx.HTTPError as error:
            return self._unanswered(error, labels, began)
        return self._relay(upstream, labels, began)


class _WindowCollector:
    """Per-slice gauges of the rolling window, computed when Prometheus scrapes."""

    def __init__(self, sentinel: Sentinel):
        self.sentinel = sentinel

    def describe(self):
        return []

    def collect(self):
        s = self.sentinel
        families = {
            name: GaugeMetricFamily(f"entropy_sentinel_{name}", text, labels=["slice"])
            for name, text in (
                ("estimated_accuracy", "estimated accuracy over the rolling window"),
                ("estimated_accuracy_low", "lower bound of its interval"),
                ("estimated_accuracy_high", "upper bound of its interval"),
                ("interval_level", "the interval's nominal coverage"),
                ("window_responses", "scored responses in the rolling window"),
                ("truncation_rate", "share of the window's responses cut at max_tokens"),
            )
        }
        regime = GaugeMetricFamily(
            "entropy_sentinel_regime",
            "the slice's regime (1 for its current one): same, shifted or unknown against the "
            "estimator's training rows (estimate.regime)",
            labels=["slice", "regime"],
        )
        oldest = time.time() - s.config.window_s
        for name in sorted(s.windows):
            window = s.windows[name]
            window.prune(oldest)
            n = len(window.rows)
            families["window_responses"].add_metric([name], n)
            if n:
                estimate = s.estimator.estimate_from_rows([row for _, row, _, _ in window.rows])
                estimate = s.window_regime(name, window, estimate.as_dict())
            regime.add_metric([name, s.regimes.get(name, UNKNOWN_REGIME)], 1)
            if not n:
                continue
            families["estimated_accuracy"].add_metric([name], estimate["point"])
            families["estimated_accuracy_low"].add_metric([name], estimate["low"])
            families["estimated_accuracy_high"].add_metric([name], estimate["high"])
            families["interval_level"].add_metric([name], estimate["level"])
            truncated = sum(bool(t) for _, _, t, _ in window.rows)
            families["truncation_rate"].add_metric([name], truncated / n)
        yield from families.values()
        yield regime


# ---------------------------------------------------------------- the wire format


def _wanted(body: dict, endpoint: str) -> int | None:
    """How many top log-probs the client asked for per token (0: the sampled one's only);
    None: no log-probs."""
    if endpoint == "chat":
        if not body.get("logprobs"):
            return None
        top = body.get("top_logprobs")
        return top if isinstance(top, int) and not isinstance(top, bool) else 0
    value = body.get("logprobs")
    if value is None or value is False:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _trimmed(response: dict, wanted: int | None, endpoint: str) -> dict:
    """``response`` (a body or a stream chunk) as the client asked for it: without log-probs,
    or with ``wanted`` top log-probs per token. Copies what it changes: the scorer holds the
    originals."""
    choices = response.get("choices")
    if not isinstance(choices, list):
        return response
    out = []
    for choice in choices:
        if not isinstance(choice, dict) or "logprobs" not in choice:
            out.append(choice)
            continue
        choice = dict(choice)
        if wanted is None:
            if endpoint == "chat":  # as llama-server and vLLM leave it out when not asked
                del choice["logprobs"]
            else:
                choice["logprobs"] = None
        elif isinstance(choice["logprobs"], dict):
            choice["logprobs"] = _cut(choice["logprobs"], wanted)
        out.append(choice)
    return {**response, "choices": out}


def _cut(logprobs: dict, wanted: int) -> dict:
    logprobs = dict(logprobs)
    if isinstance(logprobs.get("content"), list):  # chat layout (llama-server uses it for both)
        logprobs["content"] = [
            {**entry, "top_logprobs": entry["top_logprobs"][:wanted]}
            if isinstance(entry, dict) and isinstance(entry.get("top_logprobs"), list)
            else entry
            for entry in logprobs["content"]
        ]
    elif isinstance(logprobs.get("top_logprobs"), list):  # legacy: {token: logprob} per step
        logprobs["top_logprobs"] = [
            dict(sorted(top.items(), key=lambda kv: -kv[1])[:wanted])
            if isinstance(top, dict)
            else top
            for top in logprobs["top_logprobs"]
        ]
    return logprobs


def _split_events(buffer: bytes) -> list[bytes]:
    """Complete server-sent events (each with its blank line) and the unfinished rest."""
    parts = buffer.replace(b"\r\n", b"\n").split(b"\n\n")
    return [part + b"\n\n" for part in parts[:-1]] + [parts[-1]]


def _event(event: bytes, gathered: _Gathered, trim) -> bytes:
    """One event as the client gets it; its JSON data gathered for scoring."""
    if not event.startswith(b"data:"):
        return event
    data = event[5:].strip()
    if data == b"[DONE]":
        return event
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return event
    if not isinstance(chunk, dict):
        return event
    gathered.add(chunk)
    if trim is None:
        return event
    return b"data: " + orjson.dumps(_trimmed(chunk, *trim)) + b"\n\n"


class _Gathered:
    """A stream's chunks as one response body (first choice), for the scorer's parser."""

    def __init__(self):
        self.chunks = 0
        self.head: dict = {}
        self.text: list[str] = []
        self.content: list = []  # chat-layout log-probs
        self.legacy: dict[str, list] = {}  # legacy completions layout
        self.finish = None
        self.chat = False
        self.error = None

    def add(self, chunk: dict) -> None:
        self.chunks += 1
        if "error" in chunk and not chunk.get("choices"):
            self.error = chunk["error"]
            return
        for key in ("id", "created", "model"):
            if key in chunk:
                self.head.setdefault(key, chunk[key])
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self.chat = True
                if isinstance(delta.get("content"), str):
                    self.text.append(delta["content"])
            elif isinstance(choice.get("text"), str):
                self.text.append(choice["text"])
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict):
                if isinstance(logprobs.get("content"), list):
                    self.content.extend(logprobs["content"])
                for key in ("tokens", "token_logprobs", "top_logprobs"):
                    if isinstance(logprobs.get(key), list):
                        self.legacy.setdefault(key, []).extend(logprobs[key])
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]

    def response(self) -> dict:
        if self.error is not None:
            return {**self.head, "error": self.error}
        if self.content:
            logprobs = {"content": self.content}
        elif self.legacy:
            logprobs = self.legacy
        else:
            logprobs = None
        text = "".join(self.text)
        choice = {"index": 0, "finish_reason": self.finish, "logprobs": logprobs}
        choice.update({"message": {"content": text}} if self.chat else {"text": text})
        return {**self.head, "choices": [choice]}


def _forward(headers) -> dict:
    return {k: v for k, v in headers.items() if k.lower() not in _DROP}


def _backward(headers) -> dict:
    return {k: v for k, v in headers.items() if k.lower() not in _DROP}


# ---------------------------------------------------------------- the app


def build_app(config: ProxyConfig, estimator=None) -> Starlette:
    """The proxy as an ASGI app; ``app.state.sentinel`` holds its state."""
    if estimator is None:
        from entropy_sentinel.estimate.classifier import load_estimator

        estimator = load_estimator(config.estimator)
    sentinel = Sentinel(config, estimator)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(sentinel.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "upstream": sentinel.upstream, "pending": sentinel.queue.qsize()}
        )

    async def other(request: Request) -> Response:
        return await sentinel.passthrough(request)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await sentinel.start()
        try:
            yield
        finally:
            await sentinel.stop()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    app = Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/v1/chat/completions", sentinel.generate, methods=["POST"]),
            Route("/v1/completions", sentinel.generate, methods=["POST"]),
            Route("/{path:path}", other, methods=methods),
        ],
        lifespan=lifespan,
    )
    app.state.sentinel = sentinel
    return app


def serve(config: ProxyConfig, listen: str) -> None:
    """Run the proxy until SIGINT/SIGTERM; shutting down scores what is queued and flushes
    the feature log."""
    import uvicorn

    host, _, port = listen.rpartition(":")
    app = build_app(config)
    log.info("proxy on %s -> %s; feature log in %s", listen, config.upstream, config.log_dir)
    uvicorn.run(app, host=host, port=int(port), log_level="warning", access_log=False)


def _canonical(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True)
