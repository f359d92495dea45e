"""Model backends: one small interface that ``generate`` and the agent loop both call.

A backend turns prompt strings into completions. Prompts are built by umi_data's renderer (the code
that built the training prompts), never here; post-processing of the text (spec §1.4 step 5) and
routing are the caller's business (``umi_eval.generate.route``), so a scripted stand-in model is just another
backend.

Two real backends:

- :class:`TransformersBackend`: a local checkpoint ``umitrain`` wrote (``model/``, full weights) or
  a LoRA adapter directory (``adapter/``, loaded on its base with peft). Prompts are tokenized
  exactly as ``umi_train.data`` tokenized training prompts (``add_special_tokens=True``), cut from
  the left to ``max_input_tokens``, sorted by length, batched with left padding and generated
  with the KV cache; only new tokens are decoded, special tokens skipped. Greedy by default.
  With ``batching="continuous"`` (the default on CUDA) greedy requests go instead to transformers'
  own continuous-batching manager (paged KV cache): each request joins the running batch when
  submitted and leaves it when it ends (:meth:`TransformersBackend.submit`).
- :class:`OpenAIBackend`: any OpenAI-compatible *completions* server (vLLM, SGLang, llama.cpp),
  one request per prompt over a small thread pool, standard library only, time-out and retries.
  Its :meth:`~OpenAIBackend.chat` sends chat messages to ``/chat/completions`` through the same
  retry, time-out and thread-pool code (the judge of ``umieval judge``).
- :class:`VLLMBackend`: vLLM in this process (``pip install 'umi[vllm]'``), fed the same token ids.

``umi_eval.generate.engine`` schedules requests over these backends; a backend with ``submit`` takes
requests one at a time (they overlap inside it), others get batches through ``generate``.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from umi_cli.errors import UsageError


@dataclass(frozen=True, slots=True)
class Decoding:
    """Decoding settings. ``temperature == 0`` means greedy (the default; the original sampled with
    temperature 1.0, top-k 50, top-p 1.0 — pass those to mirror it)."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 42
    max_input_tokens: int = 3750  # longer prompts keep their last tokens (left truncation, spec §1.4)
    top_k: int = 0  # 0: off

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class Generation:
    """One completion: the decoded new text (special tokens skipped) and what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: bool = False  # the prompt was cut from the left to fit ``max_input_tokens``
    error: str | None = None  # the backend could not complete this prompt (text is then "")


class Backend(Protocol):
    """Anything that completes prompts: a local checkpoint, an OpenAI-compatible server, a script."""

    name: str

    def generate(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]: ...


class BackendError(UsageError):
    """A backend that cannot start (model not loadable, server unreachable): a usage/I/O error."""


def close(backend: Backend) -> None:
    """Free what a backend holds (a model's memory) before the next role's model is loaded."""
    fn = getattr(backend, "close", None)
    if callable(fn):
        fn()


# --- transformers (in process) ---------------------------------------------------------------

DTYPES = ("auto", "bfloat16", "float16", "float32")
BATCHING = ("auto", "continuous", "static")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TransformersBackend:
    """A local causal LM checkpoint, generated in process.

    ``device``: ``auto`` puts the model on the GPU(s) when there are any (``device_map="auto"``
    spreads a model too big for one GPU over all of them) and on the CPU otherwise; or an explicit
    ``cpu`` / ``cuda`` / ``cuda:1``. ``dtype``: ``auto`` is bfloat16 on a GPU that supports it
    (how α-UMi evaluated, ``--bf16_full_eval``), float32 otherwise.

    ``batching``: ``static`` pads each batch of ``batch_size`` prompts to its longest and runs
    ``model.generate`` until its last row ends; ``continuous`` hands greedy requests to transformers'
    continuous-batching manager (``init_continuous_batching``: a paged KV cache, ragged batches,
    no padding; a request enters the running batch when submitted and leaves it at its EOS), at most
    ``batch_size`` requests in a step. ``auto`` is continuous on CUDA and static on the CPU, by
    measurement and reasoning. On the CPU (2 loaded cores, one torch thread, batch 8) the two are
    within noise: 16 α-UMi planner prompts, tiny GLPFT planner, 96 new tokens: static 5.0 / 4.5 s,
    continuous 4.5 / 5.6 s (two rounds); 24 prompts of 256–3750 tokens, untrained tiny model, 48
    new tokens: static 4.9 s, continuous 6.5 s (13–18 s with 32 requests a step). Compute dominates
    there, the manager's per-step scheduling in Python and its eager paged attention cost about
    what padding wastes, and static needs no background thread. On a GPU a decode step is
    latency-bound (issue 21: 57 ms per step at batch 32 for a 0.5B model), so padding to the longest
    prompt and waiting for a batch's longest row waste most of it, and the manager runs flash/sdpa
    paged kernels with CUDA graphs: continuous is the serving path. Sampling always takes the
    static path: its per-call seeding is what
    makes a sampled run reproducible. Greedy outputs are the same on both paths (a test). The
    manager's generation thread is not a daemon: :meth:`close` the backend, or the process waits."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 8,
        device: str = "auto",
        dtype: str = "auto",
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        batching: str = "auto",
        cache_share: float = 0.85,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(path)
        self.name = str(path)
        self.batch_size = max(1, batch_size)
        if dtype not in DTYPES:
            raise BackendError(f"unknown dtype {dtype!r} (expected {', '.join(DTYPES)})")
        if batching not in BATCHING:
            raise BackendError(f"unknown batching {batching!r} (expected {', '.join(BATCHING)})")
        cuda = torch.cuda.is_available()
        if dtype == "auto":
            dtype = "bfloat16" if cuda and torch.cuda.is_bf16_supported() else "float32"
        self.dtype = dtype
        if not self.path.is_dir():
            raise BackendError(f"model directory not found: {self.path}")
        adapter = (self.path / "adapter_config.json").is_file()
        base = self.path
        if adapter:
            try:
                base = Path(json.loads((self.path / "adapter_config.json").read_text())["base_model_name_or_path"])
            except (OSError, ValueError, KeyError) as e:
                raise BackendError(f"{self.path}/adapter_config.json: no usable base model ({e})") from None
        mkw: dict[str, Any] = {"dtype": getattr(torch, dtype), "trust_remote_code": trust_remote_code}
        if attn_implementation:
            mkw["attn_implementation"] = attn_implementation
        if device == "auto":
            self.device = "cuda" if cuda else "cpu"
            if cuda:
                mkw["device_map"] = "auto"
        else:
            self.device = device
        try:
            tok_dir = self.path if (self.path / "tokenizer_config.json").is_file() else base
            self.tokenizer = AutoTokenizer.from_pretrained(tok_dir, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(base, **mkw)
            if adapter:
                try:
                    from peft import PeftModel
                except ImportError:
                    raise BackendError("a LoRA adapter needs peft: pip install 'umi[lora]'") from None
                model = PeftModel.from_pretrained(model, self.path).merge_and_unload()
        except (OSError, ValueError) as e:
            raise BackendError(f"cannot load model {self.path}: {_first_line(e)}") from None
        if "device_map" not in mkw:
            # transformers wraps PreTrainedModel.to with functools.wraps(nn.Module.to), so the stub
            # sees a _Wrapped callable that does not bind self and types `device` as the model
            model = model.to(self.device)  # type: ignore[arg-type]
        model.eval()
        # the loaded model, None once closed (transformers names no public type with both .device and generate())
        self.model: Any | None = model
        tok = self.tokenizer
        if tok.eos_token_id is None:
            raise BackendError(f"{self.path}: the tokenizer has no EOS token")
        # umitrain padded with EOS when a tokenizer had no pad token; the attention mask hides it.
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.eos_id = tok.eos_token_id
        tok.model_max_length = 1 << 60  # we cut prompts ourselves (left truncation): no length warning
        on_gpu = str(model.device).startswith("cuda")
        self.batching = batching if batching != "auto" else ("continuous" if on_gpu else "static")
        # the fraction of free accelerator memory this model's paged KV cache may take (the engine
        # gives each of the trio's models its share before the first request)
        self.cache_share = cache_share
        self.cache_free: int | None = None  # free accelerator bytes the share is of (set by the engine)
        self._cb: _Continuous | None = None
        self._cb_lock = threading.Lock()

    def _encode(self, prompts: Sequence[str], limit: int) -> list[tuple[list[int], bool]]:
        # exactly umi_train.data._encode's prompt tokenization, then the spec's left truncation
        ids = self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        return [(x[len(x) - limit :], True) if len(x) > limit else (x, False) for x in ids]

    def _generation(self, toks: list[int], prompt_tokens: int, truncated: bool) -> Generation:
        """New tokens up to and including the first EOS, decoded without special tokens."""
        n = toks.index(self.eos_id) + 1 if self.eos_id in toks else len(toks)
        # one sequence decodes to one str (transformers types decode as str | list[str] for both cases)
        text = cast(str, self.tokenizer.decode(toks[:n], skip_special_tokens=True))
        return Generation(text, prompt_tokens, n, truncated)

    def submit(self, prompt: str, decoding: Decoding) -> Future[Generation] | None:
        """Continuous batching: the request joins the running batch now; ``None`` when this request
        takes the static path (``batching="static"``, or sampling)."""
        if self.batching != "continuous" or not decoding.greedy or self.model is None:
            return None
        ((ids, truncated),) = self._encode([prompt], decoding.max_input_tokens)
        with self._cb_lock:
            if self._cb is None:
                self._cb = _Continuous(self, decoding)
            return self._cb.add(ids, truncated, decoding.max_new_tokens)

    def generate(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]:
        futures = [self.submit(p, decoding) for p in prompts]
        if futures and all(f is not None for f in futures):
            return [f.result() for f in futures]  # type: ignore[union-attr]
        return self._generate_static(prompts, decoding)

    def _generate_static(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]:
        import torch
        from transformers import GenerationConfig

        encoded = self._encode(prompts, decoding.max_input_tokens)
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))  # longest first: OOM early
        config = GenerationConfig(
            max_new_tokens=decoding.max_new_tokens,
            do_sample=not decoding.greedy,
            num_beams=1,
            temperature=decoding.temperature if not decoding.greedy else None,
            top_p=decoding.top_p if not decoding.greedy else None,
            # 0 = off, passed as 0: None would let transformers fill in the checkpoint's or its
            # global default (top-k 50), unlike the openai backend, which sends no top_k then
            top_k=decoding.top_k if not decoding.greedy else None,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_id,
            bos_token_id=self.tokenizer.bos_token_id,
            use_cache=True,
        )
        out: list[Generation | None] = [None] * len(encoded)
        if not decoding.greedy:
            torch.manual_seed(decoding.seed)
        model = self.model
        assert model is not None, "generate() after close()"
        device = model.device
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                x = encoded[i][0]
                ids[row, width - len(x) :] = torch.tensor(x, dtype=torch.long)
                mask[row, width - len(x) :] = 1
            with torch.inference_mode():
                gen = model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config
                )
            new = gen[:, width:].tolist()
            for row, i in enumerate(batch):
                out[i] = self._generation(new[row], len(encoded[i][0]), encoded[i][1])
        return [g for g in out if g is not None]

    def close(self) -> None:
        import gc

        import torch

        with self._cb_lock:
            if self._cb is not None:
                self._cb.stop()
                self._cb = None
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class _Continuous:
    """One model's transformers continuous-batching manager and the futures of its requests.

    The manager generates in its own thread; a collector thread hands each finished output to the
    future of its request. Sized for the run: ``max_requests_per_batch`` is the backend's batch
    size; on a GPU the paged cache takes the backend's ``cache_share`` of the free memory (three
    role models share one device), on the CPU just the blocks the running batch can fill."""

    def __init__(self, backend: TransformersBackend, decoding: Decoding) -> None:
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        self.backend = backend
        model = backend.model
        assert model is not None  # submit() starts the manager only while the model is loaded
        gen = GenerationConfig(max_new_tokens=decoding.max_new_tokens, do_sample=False, num_beams=1,
                               eos_token_id=backend.eos_id, pad_token_id=backend.pad_id)
        page = 64
        opts: dict[str, Any] = {"page_size": page, "max_requests_per_batch": backend.batch_size}
        if str(model.device).startswith("cuda"):
            import torch

            # the share is of the memory that was free before the first cache; the manager takes a
            # fraction of what is free now (after the other models' caches)
            share, before = backend.cache_share, backend.cache_free
            now = torch.cuda.mem_get_info(model.device)[0]
            opts["max_memory_percent"] = min(0.9, share * before / now) if before and now else share
        else:
            per_request = -(-(decoding.max_input_tokens + decoding.max_new_tokens) // page)
            opts |= {"num_blocks": backend.batch_size * per_request + 1, "max_batch_tokens": 2048}
        logging.getLogger("transformers.generation.continuous_batching").setLevel(logging.ERROR)
        self.manager = model.init_continuous_batching(generation_config=gen,
                                                      continuous_batching_config=ContinuousBatchingConfig(**opts))
        self.manager.start()
        self.pending: dict[str, tuple[Future[Generation], int, bool]] = {}
        self.lock = threading.Lock()
        self.ids = itertools.count()
        self.stopping = threading.Event()
        self.collector = threading.Thread(target=self._collect, name="umieval-cb", daemon=True)
        self.collector.start()

    def add(self, ids: list[int], truncated: bool, max_new_tokens: int) -> Future[Generation]:
        fut: Future[Generation] = Future()
        rid = f"umi-{next(self.ids)}"
        with self.lock:
            self.pending[rid] = (fut, len(ids), truncated)
        if self.manager.add_request(ids, request_id=rid, max_new_tokens=max_new_tokens,
                                    eos_token_id=self.backend.eos_id) is None:
            self._fail(RuntimeError("the continuous-batching manager refused a request"), rid)
        return fut

    def _fail(self, error: BaseException, rid: str | None = None) -> None:
        with self.lock:
            rids = [rid] if rid is not None else list(self.pending)
            got = [self.pending.pop(r) for r in rids if r in self.pending]
        for fut, *_ in got:
            fut.set_exception(error)

    def _collect(self) -> None:
        while not self.stopping.is_set():
            out = self.manager.get_result(timeout=0.1)
            if out is None:
                if not self.manager.is_running():
                    self._fail(RuntimeError("the continuous-batching generation thread stopped"))
                    return
                continue
            if not out.is_finished():
                continue
            with self.lock:
                entry = self.pending.pop(out.request_id, None)
            if entry is None:
                continue
            fut, n, truncated = entry
            if out.error is not None:
                fut.set_result(Generation("", n, 0, truncated, f"generation failed: {out.error}"))
            else:
                fut.set_result(self.backend._generation(list(out.generated_tokens), n, truncated))

    def stop(self) -> None:
        self.stopping.set()
        self.manager.stop(block=True, timeout=10)
        self.collector.join(timeout=1)
        self._fail(RuntimeError("the model was closed"))


# --- OpenAI-compatible completions server ----------------------------------------------------


class OpenAIBackend:
    """``POST {base_url}/completions`` per prompt (``base_url`` like ``http://127.0.0.1:8000/v1``).

    The server applies its own tokenizer and must not add a chat template: the prompt is the
    whole model input. Prompts longer than the server's context come back as errors (counted in
    the summary), since only the server can count its tokens. Retries transient failures
    (connection errors, HTTP 429 and 5xx) with exponential back-off."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        retries: int = 3,
        concurrency: int = 8,
        backoff: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/completions"
        self.model = model
        self.name = f"{model}@{base_url}"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout, self.retries, self.concurrency, self.backoff = timeout, retries, max(1, concurrency), backoff
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _body(self, prompt: str, d: Decoding) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": d.max_new_tokens,
            "temperature": 0.0 if d.greedy else d.temperature,
            "top_p": 1.0 if d.greedy else d.top_p,
            "seed": d.seed,
            "n": 1,
            "stream": False,
        }
        if not d.greedy and d.top_k > 0:
            body["top_k"] = d.top_k  # vLLM / SGLang / llama.cpp extension
        return body

    def _post(self, body: dict[str, Any], url: str | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(url or self.url, json.dumps(body).encode(), headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read())

    def _one(self, prompt: str, d: Decoding) -> Generation:
        return self._request(self.url, self._body(prompt, d), lambda choice: str(choice.get("text") or ""))

    def _request(self, url: str, body: dict[str, Any], text_of: Any) -> Generation:
        """POST ``body`` with retries; ``text_of(choice)`` reads the text of the first choice."""
        last = ""
        for attempt in range(self.retries + 1):
            try:
                data = self._post(body, url)
                choice = data["choices"][0]
                usage = data.get("usage") or {}
                text = text_of(choice)
                if text is not None and not isinstance(text, str):
                    raise TypeError(f"the reply text is a {type(text).__name__}, not a string")
                return Generation(text or "", int(usage.get("prompt_tokens") or 0),
                                  int(usage.get("completion_tokens") or 0))
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}: {e.read()[:200].decode('utf-8', 'replace')}"
                if e.code != 429 and e.code < 500:
                    return Generation("", error=last)  # the request itself is wrong: retrying won't help
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            except (ValueError, KeyError, IndexError, TypeError, AttributeError, http.client.HTTPException) as e:
                last = f"malformed response: {_first_line(e)}"
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        return Generation("", error=last)

    def generate(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]:
        return self._map(lambda p: self._one(p, decoding), prompts)

    def _map(self, fn: Any, items: Sequence[Any]) -> list[Generation]:
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(fn, items))

    def chat(self, conversations: Sequence[tuple[list[dict[str, str]], int]], decoding: Decoding
             ) -> list[Generation]:
        """``POST {base_url}/chat/completions`` per ``(messages, seed)`` (the server applies its
        chat template), with the retries, time-out and thread pool of :meth:`generate`."""
        url = self.base_url + "/chat/completions"

        def one(item: tuple[list[dict[str, str]], int]) -> Generation:
            messages, seed = item
            body = self._body("", Decoding(decoding.max_new_tokens, decoding.temperature, decoding.top_p, seed,
                                           decoding.max_input_tokens, decoding.top_k))
            del body["prompt"]
            body["messages"] = messages
            return self._request(url, body, lambda choice: (choice.get("message") or {}).get("content"))

        return self._map(one, conversations)

    def submit(self, prompt: str, decoding: Decoding) -> Future[Generation]:
        """One request on the backend's pool (``concurrency`` in flight): the engine's requests of
        every role overlap on the server, which batches them itself."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="umieval-openai")
            return self._pool.submit(self._one, prompt, decoding)

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


# --- vLLM (in process) -------------------------------------------------------------------------


class VLLMBackend:
    """A local checkpoint generated by vLLM in this process (``pip install 'umi[vllm]'``).

    Same inputs as :class:`TransformersBackend`: the checkpoint's tokenizer with
    ``add_special_tokens=True``, cut from the left to ``max_input_tokens``, handed to vLLM as token
    ids (so vLLM's own prompt handling cannot differ); it stops at the tokenizer's EOS or after
    ``max_new_tokens``, decodes without special tokens, greedy unless a temperature is given.
    vLLM batches continuously inside ``LLM.generate``; the engine calls it with whatever requests
    of that role are waiting. ``gpu_memory_utilization`` is this model's share of the GPU (the
    trio's three engines share one device)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        gpu_memory_utilization: float = 0.28,
        max_model_len: int | None = None,
        seed: int = 42,
    ) -> None:
        try:
            import vllm
        except ImportError:
            raise BackendError("--backend vllm needs the vllm package: pip install 'umi[vllm]'") from None
        from transformers import AutoTokenizer

        self.path = Path(path)
        self.name = str(path)
        if dtype not in DTYPES:
            raise BackendError(f"unknown dtype {dtype!r} (expected {', '.join(DTYPES)})")
        if not self.path.is_dir():
            raise BackendError(f"model directory not found: {self.path}")
        if dtype == "auto":  # as the transformers backend on a GPU: bfloat16 where the card has it
            import torch

            dtype = "bfloat16" if not torch.cuda.is_available() or torch.cuda.is_bf16_supported() else "float16"
        self.dtype = dtype
        self.device = "cuda"
        self._vllm = vllm
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=trust_remote_code)
            kw: dict[str, Any] = {"model": str(self.path), "dtype": dtype, "trust_remote_code": trust_remote_code,
                                  "gpu_memory_utilization": gpu_memory_utilization, "seed": seed}
            if max_model_len:
                kw["max_model_len"] = max_model_len
            self.llm = vllm.LLM(**kw)
        except (OSError, ValueError, RuntimeError) as e:
            raise BackendError(f"cannot load model {self.path} with vllm: {_first_line(e)}") from None
        if self.tokenizer.eos_token_id is None:
            raise BackendError(f"{self.path}: the tokenizer has no EOS token")
        self.eos_id = self.tokenizer.eos_token_id
        self.tokenizer.model_max_length = 1 << 60

    def params(self, d: Decoding) -> Any:
        """vLLM's SamplingParams for ``d``: temperature 0 is vLLM's greedy; top-k -1 is off."""
        return self._vllm.SamplingParams(
            n=1,
            max_tokens=d.max_new_tokens,
            temperature=0.0 if d.greedy else d.temperature,
            top_p=1.0 if d.greedy else d.top_p,
            top_k=d.top_k if (not d.greedy and d.top_k > 0) else -1,
            seed=None if d.greedy else d.seed,
            stop_token_ids=[self.eos_id],
            ignore_eos=False,
            skip_special_tokens=True,
        )

    def generate(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]:
        ids = self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        limit = decoding.max_input_tokens
        cut = [(x[len(x) - limit :], True) if len(x) > limit else (x, False) for x in ids]
        outs = self.llm.generate([{"prompt_token_ids": x} for x, _ in cut], self.params(decoding), use_tqdm=False)
        got = []
        for (x, truncated), out in zip(cut, outs, strict=True):
            c = out.outputs[0]
            toks = list(c.token_ids)
            n = toks.index(self.eos_id) + 1 if self.eos_id in toks else len(toks)
            # decode as the transformers backend does (vLLM's own text may differ at a stop token)
            text = cast(str, self.tokenizer.decode(toks[:n], skip_special_tokens=True))  # one sequence: one str
            got.append(Generation(text, len(x), n, truncated))
        return got

    def close(self) -> None:
        import gc

        self.llm = None
        gc.collect()


BACKENDS = ("transformers", "openai", "vllm")


def require_backend(kind: str) -> None:
    """Fail early, in one line, when a backend's optional package is missing."""
    import importlib.util
    import sys

    if kind != "vllm":
        return
    # imported already (or blocked: None in sys.modules), else installed
    loaded = sys.modules["vllm"] is not None if "vllm" in sys.modules else importlib.util.find_spec("vllm") is not None
    if not loaded:
        raise BackendError("--backend vllm needs the vllm package: pip install 'umi[vllm]'")


def served_model(model: str, base_url: str | None) -> tuple[str, str]:
    """(served name, server URL) of an ``openai`` model: ``NAME@URL`` names its own server, a plain
    name is served at ``base_url``; neither is a usage error."""
    name, sep, url = model.partition("@http")
    base = "http" + url if sep else base_url
    if not base:
        raise BackendError(f"--backend openai needs --base-url (or MODEL@URL) for {model!r}")
    return name, base


def open_backend(kind: str, model: str, **options: Any) -> Backend:
    """A backend by name: ``transformers`` (``model`` = checkpoint dir; options batch_size, device,
    dtype, attn_implementation, trust_remote_code, batching, cache_share), ``vllm`` (checkpoint dir;
    dtype, trust_remote_code, gpu_memory_utilization, max_model_len, seed) or ``openai`` (``model`` =
    served model name, or ``name@URL``; options base_url, api_key, timeout, retries, concurrency)."""
    if kind == "transformers":
        keys: tuple[str, ...] = ("batch_size", "device", "dtype", "attn_implementation", "trust_remote_code",
                                 "batching", "cache_share")
        return TransformersBackend(model, **{k: v for k, v in options.items() if k in keys and v is not None})
    if kind == "vllm":
        keys = ("dtype", "trust_remote_code", "gpu_memory_utilization", "max_model_len", "seed")
        return VLLMBackend(model, **{k: v for k, v in options.items() if k in keys and v is not None})
    if kind == "openai":
        name, base = served_model(model, options.get("base_url"))
        keys = ("api_key", "timeout", "retries", "concurrency")
        return OpenAIBackend(base, name, **{k: v for k, v in options.items() if k in keys and v is not None})
    raise BackendError(f"unknown backend {kind!r} (expected {', '.join(BACKENDS)})")
