"""The transformers backend: a batched decoding loop that captures top-k log-probabilities.

The loop is written out (rather than calling ``generate`` with ``output_scores``) so that
capture happens on the device as each step is decoded, from the raw logits (or the processed
ones, ``logprobs_mode: processed``), into per-row buffers of ``steps × k``: memory is
O(steps × k), never O(steps × vocabulary).

Throughput: prompts are sorted by length and admitted within a row and token budget. Rows
that finish stop costing compute: ``batching: compact`` drops them from the batch and the KV
cache (``index_select`` on the cache layers); ``refill`` (the default) also admits waiting
prompts into the freed rows, prefilling them separately and left-padding the caches to a
common length. ``static`` keeps every row until the whole batch is done.

Sampling uses the Gumbel-max trick with one random stream per item, seeded from
``(seed, item_id)`` and advanced once per step, so an item's tokens do not depend on which
batch or row it landed in: a resumed or re-sharded run reproduces an uninterrupted one.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from entropy_sentinel.generate.backends.base import (
    GenerationSettings,
    error_row,
    item_seed,
    marker_token_ids,
    reasoning_mask,
    render_chat,
)

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, requested)


def is_oom(error: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(error, oom) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


@dataclass
class Request:
    item_id: str
    ids: list[int]
    seed: int
    limit: int  # new tokens allowed: max_new_tokens, less where the context is shorter


class TransformersBackend:
    """Load a Hugging Face causal LM once and generate with entropy capture."""

    name = "transformers"

    def __init__(self, weights_dir: str, settings: GenerationSettings, options: dict | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.settings = settings
        self.device = pick_device(settings.device)
        dtype = pick_dtype(settings.dtype, self.device)
        trust = settings.trust_remote_code
        self.tokenizer = AutoTokenizer.from_pretrained(weights_dir, trust_remote_code=trust)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            weights_dir, dtype=dtype, trust_remote_code=trust, attn_implementation="sdpa"
        ).to(self.device)
        self.model.eval()
        self.eos_ids = self._eos_ids()
        self.context = settings.max_model_len or _model_context(self.model.config)
        self.markers = marker_token_ids(self.tokenizer, settings.reasoning_markers)

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return sorted(set(ids))

    def render_prompt(self, messages: list[dict]) -> str:
        return render_chat(self.tokenizer, messages, self.settings)

    def provenance(self) -> dict:
        return {
            "backend": self.name,
            "engine_version": _version("transformers"),
            "torch_version": torch.__version__,
            "device": str(self.device),
            "dtype": str(self.model.dtype),
            "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
            "eos_token_ids": self.eos_ids,
            "chat_template": bool(self.tokenizer.chat_template),
            "vocab_size": int(self.model.config.vocab_size),
            "max_model_len": self.context,
            "logprobs_mode": self.settings.logprobs_mode,
            "topk_includes_sampled": False,  # sampled token's log-prob is in sampled_logprobs
            "reasoning_markers": self.markers,
        }

    def token_count(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def stream(self, prompts: dict[str, str]) -> Iterator[dict]:
        """Rows (see ``GENERATION_COLUMNS``) in the order items finish.

        Prompts that do not fit the context become error rows. On out-of-memory the row and
        token budgets are halved and the unfinished items retried; other failures turn the
        items in flight into error rows and decoding goes on with the rest.
        """
        s = self.settings
        requests = []
        for item_id, text in prompts.items():
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) >= self.context:
                yield error_row(
                    item_id, f"prompt of {len(ids)} tokens exceeds context {self.context}", len(ids)
                )
                continue
            limit = min(s.max_new_tokens, self.context - len(ids))
            requests.append(Request(item_id, ids, item_seed(s.seed, item_id), limit))
        requests.sort(key=lambda r: (len(r.ids), r.item_id))
        rows, budget = s.batch_size, s.max_batch_tokens
        while requests:
            decoder = Decoder(self.model, self.eos_ids, s, rows, budget)
            finished: set[str] = set()
            try:
                for result in decoder.run(requests):
                    finished.add(result["item_id"])
                    yield self._row(result)
                requests = []
            except Exception as error:  # noqa: BLE001 - any failure must not lose the others
                in_flight = set(decoder.active_items)
                remaining = [r for r in requests if r.item_id not in finished]
                del decoder
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if is_oom(error) and (rows > 1 or budget > s.max_new_tokens):
                    rows, budget = max(1, rows // 2), max(s.max_new_tokens, budget // 2)
                    log.warning("out of memory; retrying with %d rows, %d tokens", rows, budget)
                    requests = remaining
                    continue
                log.exception("decoding failed; recording %d items as errors", len(in_flight))
                for r in remaining:
                    if r.item_id in in_flight:
                        yield error_row(r.item_id, error, len(r.ids))
                requests = [r for r in remaining if r.item_id not in in_flight]

    def generate(self, item_ids: Sequence[str], prompts: Sequence[str]) -> list[dict]:
        """Rows for the given items, in the given order."""
        rows = self.stream(dict(zip(item_ids, prompts, strict=True)))
        by_id = {row["item_id"]: row for row in rows}
        return [by_id[i] for i in item_ids]

    def _row(self, result: dict) -> dict:
        ids = result["tokens"].tolist()
        topk_ids = result["topk_ids"]
        stopped = bool(ids) and ids[-1] in self.eos_ids
        in_topk = (topk_ids == result["tokens"][:, None].to(topk_ids.dtype)).any(dim=1)
        return {
            "item_id": result["item_id"],
            "prompt_tokens": result["prompt_tokens"],
            "response": self.tokenizer.decode(ids, skip_special_tokens=True),
            "token_ids": ids,
            "sampled_logprobs": result["sampled_logprobs"].tolist(),
            "topk_token_ids": topk_ids.tolist(),
            "topk_logprobs": result["topk_logprobs"].tolist(),
            "full_entropy": result["full_entropy"].tolist(),
            "n_tokens": len(ids),
            "finish_reason": "stop" if stopped else "length",
            "error": None,
            "sampled_in_topk": in_topk.tolist(),
            "is_reasoning": reasoning_mask(ids, self.markers, result["prompt_ids"]),
            "logprobs_mode": self.settings.logprobs_mode,
        }


class Decoder:
    """Row scheduler and decoding loop over a left-padded, growable batch."""

    def __init__(self, model, eos_ids, settings: GenerationSettings, max_rows: int, budget: int):
        self.model, self.s = model, settings
        self.max_rows, self.budget = max_rows, budget
        self.device = model.device
        self.eos = torch.tensor(list(eos_ids), dtype=torch.long, device=self.device)
        self.fill = int(eos_ids[0]) if len(eos_ids) else 0  # fed to finished rows
        self.cache_kwarg = _cache_kwarg(model)
        self.active_items: list[str] = []
        self.computed_tokens = 0  # row-steps decoded, finished rows included (for benches)

    @torch.inference_mode()
    def run(self, requests: Sequence[Request]) -> Iterator[dict]:
        """Decode every request; yields one result per request as it finishes."""
        s, k = self.s, self.s.top_k_logprobs
        waiting = list(requests)
        policy = s.batching
        self.rows: list[Request] = []
        self.gens: list[torch.Generator | None] = []
        self.start: list[int] = []  # global step at which each row joined
        self.done: list[bool] = []
        self.cache = None
        self.arange = torch.arange(0, device=self.device)
        self.n_done = 0
        step = 0
        # -inf only appears after nucleus filtering; elsewhere the entropy needs no NaN guard.
        guard = s.logprobs_mode == "processed" and s.temperature > 0 and s.top_p < 1
        while waiting or self.rows:
            if not self.rows or (policy == "refill" and waiting and self._want_refill(waiting)):
                self._refill(waiting, step)
                if not self.rows:
                    raise RuntimeError("no request fits the token budget")
            self._grow(step)
            n = len(self.rows)
            if self.arange.shape[0] != n:
                self.arange = torch.arange(n, device=self.device)
            idx = self.steps
            logits = self.logits.float()
            processed = _processed_logits(logits, s)
            if s.logprobs_mode == "raw":
                captured = logits - logits.logsumexp(dim=-1, keepdim=True)
            else:
                captured = torch.log_softmax(processed, dim=-1)
            top_values, top_indices = captured.topk(k, dim=-1)
            token = _choose(processed, s.temperature, self.gens)
            token = torch.where(self.finished, self.fill, token)
            at = (self.arange, idx.clamp(max=self.tokens.shape[1] - 1))
            self.tokens[at] = token
            self.sampled[at] = captured.gather(1, token[:, None]).squeeze(1)
            self.topk_lp[at] = top_values
            self.topk_ids[at] = top_indices.to(torch.int32)
            plogp = captured.exp() * captured
            self.entropy[at] = -(plogp.nan_to_num() if guard else plogp).sum(dim=-1)
            self.computed_tokens += n
            stop = torch.isin(token, self.eos) | (idx + 1 >= self.limit)
            self.steps += 1
            newly = (stop & ~self.finished).nonzero().flatten().tolist()
            self.finished |= stop
            if newly:
                yield from self._emit(newly, step)
            step += 1
            n_done = self.n_done
            # A compaction copies the whole cache, so wait until a quarter of the rows are done.
            if policy != "static" and n_done and (n_done == n or n_done * 4 >= n):
                live = [i for i, d in enumerate(self.done) if not d]
                self._select(live)
                token = token[live] if live else token[:0]
            if self.rows and self.n_done < len(self.rows):
                self._forward(token)
            else:
                self.rows = []
        self.active_items = []

    def _want_refill(self, waiting: list[Request]) -> bool:
        free = self.max_rows - len(self.rows)
        return free >= max(1, min(len(waiting), self.max_rows // 4))

    def _admit(self, waiting: list[Request]) -> list[Request]:
        """Take waiting requests (shortest first) within the row and token budgets."""
        length = self.mask.shape[1] if self.rows else 0
        taken: list[Request] = []
        while waiting and len(self.rows) + len(taken) < self.max_rows:
            longest = max(length, len(waiting[0].ids))
            cost = (len(self.rows) + len(taken) + 1) * (longest + self.s.max_new_tokens)
            if (self.rows or taken) and cost > self.budget:
                break
            taken.append(waiting.pop(0))
        return taken

    def _refill(self, waiting: list[Request], step: int) -> None:
        from transformers import DynamicCache

        new = self._admit(waiting)
        if not new:
            return
        self.active_items = [r.item_id for r in self.rows] + [r.item_id for r in new]
        width = max(len(r.ids) for r in new)
        pad = self.model.config.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(r.ids)) + r.ids for r in new], device=self.device)
        mask = torch.tensor(
            [[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in new], device=self.device
        )
        cache = DynamicCache()
        logits = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0),
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_kwarg: cache},
        ).logits[:, -1, :]
        limit = torch.tensor([r.limit for r in new], device=self.device)
        positions = torch.tensor([len(r.ids) for r in new], device=self.device)
        gens = [
            torch.Generator(device=self.device).manual_seed(r.seed)
            if self.s.temperature > 0
            else None
            for r in new
        ]
        if not self.rows:
            self.cache, self.mask, self.logits = cache, mask, logits
            self.limit, self.positions = limit, positions
            self.steps = torch.zeros_like(limit)
            self.n_done = 0
            self.finished = torch.zeros(len(new), dtype=torch.bool, device=self.device)
            self.rows, self.gens, self.start, self.done = list(new), gens, [step] * len(new), []
            self.done = [False] * len(new)
            self._new_buffers(len(new), 64)
            return
        old_len, new_len = self.mask.shape[1], width
        _check_layers(self.cache)
        _check_layers(cache)
        for old, fresh in zip(self.cache.layers, cache.layers, strict=True):
            old.keys = torch.cat(
                [
                    _left_pad(old.keys, new_len - old_len, 2),
                    _left_pad(fresh.keys, old_len - new_len, 2),
                ]
            )
            old.values = torch.cat(
                [
                    _left_pad(old.values, new_len - old_len, 2),
                    _left_pad(fresh.values, old_len - new_len, 2),
                ]
            )
        self.mask = torch.cat(
            [_left_pad(self.mask, new_len - old_len, 1), _left_pad(mask, old_len - new_len, 1)]
        )
        self.logits = torch.cat([self.logits, logits])
        self.limit = torch.cat([self.limit, limit])
        self.steps = torch.cat([self.steps, torch.zeros_like(limit)])
        self.positions = torch.cat([self.positions, positions])
        self.finished = torch.cat([self.finished, torch.zeros_like(limit, dtype=torch.bool)])
        self.rows += new
        self.gens += gens
        self.start += [step] * len(new)
        self.done += [False] * len(new)
        buffers = self._buffers()
        self._new_buffers(len(new), self.tokens.shape[1])
        fresh = self._buffers()
        self._set_buffers([torch.cat([a, b]) for a, b in zip(buffers, fresh, strict=True)])

    def _new_buffers(self, rows: int, steps: int) -> None:
        k, dev = self.s.top_k_logprobs, self.device
        self._set_buffers(
            [
                torch.zeros(rows, steps, dtype=torch.long, device=dev),
                torch.zeros(rows, steps, dtype=torch.float32, device=dev),
                torch.zeros(rows, steps, k, dtype=torch.float32, device=dev),
                torch.zeros(rows, steps, k, dtype=torch.int32, device=dev),
                torch.zeros(rows, steps, dtype=torch.float32, device=dev),
            ]
        )

    def _buffers(self) -> list[torch.Tensor]:
        return [self.tokens, self.sampled, self.topk_lp, self.topk_ids, self.entropy]

    def _set_buffers(self, buffers: list[torch.Tensor]) -> None:
        self.tokens, self.sampled, self.topk_lp, self.topk_ids, self.entropy = buffers

    def _grow(self, step: int) -> None:
        """Double the step capacity when a live row is about to outgrow it."""
        live = [st for st, d in zip(self.start, self.done, strict=True) if not d]
        need = step - min(live) + 1 if live else 0
        have = self.tokens.shape[1]
        if need > have:
            extra = min(max(have, need - have), self.s.max_new_tokens)
            self._set_buffers(
                [
                    torch.cat([b, b.new_zeros(b.shape[0], extra, *b.shape[2:])], dim=1)
                    for b in self._buffers()
                ]
            )

    def _emit(self, rows: list[int], step: int) -> Iterator[dict]:
        picked = torch.tensor(rows, device=self.device)
        host = [b.index_select(0, picked).cpu() for b in self._buffers()]
        for j, row in enumerate(rows):
            self.done[row] = True
            self.n_done += 1
            request = self.rows[row]
            n = step - self.start[row] + 1
            yield {
                "item_id": request.item_id,
                "prompt_ids": request.ids,
                "prompt_tokens": len(request.ids),
                "tokens": host[0][j, :n],
                "sampled_logprobs": host[1][j, :n],
                "topk_logprobs": host[2][j, :n],
                "topk_ids": host[3][j, :n],
                "full_entropy": host[4][j, :n],
            }

    def _select(self, keep: list[int]) -> None:
        """Drop finished rows from the batch and the cache, then trim shared left padding."""
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        _check_layers(self.cache)
        self.mask = self.mask.index_select(0, index)
        lead = 0
        if keep:
            lead = int(self.mask.any(dim=0).long().argmax())
        self.mask = self.mask[:, lead:]
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, lead:]
            layer.values = layer.values.index_select(0, index)[:, :, lead:]
        self.n_done = sum(self.done[i] for i in keep)
        for name in ("limit", "positions", "finished", "steps"):
            setattr(self, name, getattr(self, name).index_select(0, index))
        self._set_buffers([b.index_select(0, index) for b in self._buffers()])
        self.rows = [self.rows[i] for i in keep]
        self.gens = [self.gens[i] for i in keep]
        self.start = [self.start[i] for i in keep]
        self.done = [self.done[i] for i in keep]
        self.active_items = [r.item_id for r in self.rows]

    def _forward(self, token: torch.Tensor) -> None:
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.rows), 1)], dim=1)
        self.logits = self.model(
            input_ids=token[:, None],
            attention_mask=self.mask,
            position_ids=self.positions[:, None],
            use_cache=True,
            **{self.cache_kwarg: self.cache},
        ).logits[:, -1, :]
        self.positions = self.positions + 1


def _left_pad(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    if width <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = width
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _check_layers(cache) -> None:
    from transformers.cache_utils import DynamicLayer

    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            raise TypeError(f"batching needs plain DynamicLayer caches, not {type(layer).__name__}")


def _model_context(config) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 20


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _cache_kwarg(model) -> str:
    # transformers 5 renamed `past_key_values` to `cache` in some models.
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _processed_logits(logits: torch.Tensor, s: GenerationSettings) -> torch.Tensor:
    """Temperature and nucleus filtering, as the sampler sees them."""
    if s.temperature <= 0:
        return logits
    scaled = logits / s.temperature
    if s.top_p < 1.0:
        sorted_logits, order = scaled.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs > s.top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        scaled = torch.full_like(scaled, float("-inf")).scatter(1, order, sorted_logits)
    return scaled


def _choose(processed: torch.Tensor, temperature: float, generators) -> torch.Tensor:
    """Greedy, or Gumbel-max sampling with one random stream per row."""
    if temperature <= 0:
        return processed.argmax(dim=-1)
    noise = torch.stack(
        [torch.rand(processed.shape[1], generator=g, device=processed.device) for g in generators]
    )
    gumbel = -torch.log(-torch.log(noise.clamp_min(1e-20)))
    return (processed + gumbel).argmax(dim=-1)
