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
- :class:`OpenAIBackend`: any OpenAI-compatible *completions* server (vLLM, SGLang, llama.cpp),
  one request per prompt over a small thread pool, standard library only, time-out and retries.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


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


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TransformersBackend:
    """A local causal LM checkpoint, generated in process.

    ``device``: ``auto`` puts the model on the GPU(s) when there are any (``device_map="auto"``
    spreads a model too big for one GPU over all of them) and on the CPU otherwise; or an explicit
    ``cpu`` / ``cuda`` / ``cuda:1``. ``dtype``: ``auto`` is bfloat16 on a GPU that supports it
    (how α-UMi evaluated, ``--bf16_full_eval``), float32 otherwise."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 8,
        device: str = "auto",
        dtype: str = "auto",
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(path)
        self.name = str(path)
        self.batch_size = max(1, batch_size)
        if dtype not in DTYPES:
            raise BackendError(f"unknown dtype {dtype!r} (expected {', '.join(DTYPES)})")
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
            model = model.to(self.device)
        model.eval()
        self.model = model
        tok = self.tokenizer
        if tok.eos_token_id is None:
            raise BackendError(f"{self.path}: the tokenizer has no EOS token")
        # umitrain padded with EOS when a tokenizer had no pad token; the attention mask hides it.
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.eos_id = tok.eos_token_id
        tok.model_max_length = 1 << 60  # we cut prompts ourselves (left truncation): no length warning

    def _encode(self, prompts: Sequence[str], limit: int) -> list[tuple[list[int], bool]]:
        # exactly umi_train.data._encode's prompt tokenization, then the spec's left truncation
        ids = self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        return [(x[len(x) - limit :], True) if len(x) > limit else (x, False) for x in ids]

    def generate(self, prompts: Sequence[str], decoding: Decoding) -> list[Generation]:
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
        device = self.model.device
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
                gen = self.model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config
                )
            new = gen[:, width:].tolist()
            for row, i in enumerate(batch):
                toks = new[row]
                n = toks.index(self.eos_id) + 1 if self.eos_id in toks else len(toks)
                text = self.tokenizer.decode(toks[:n], skip_special_tokens=True)
                out[i] = Generation(text, len(encoded[i][0]), n, encoded[i][1])
        return [g for g in out if g is not None]

    def close(self) -> None:
        import gc

        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


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
        self.url = base_url.rstrip("/") + "/completions"
        self.model = model
        self.name = f"{model}@{base_url}"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout, self.retries, self.concurrency, self.backoff = timeout, retries, max(1, concurrency), backoff

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

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read())

    def _one(self, prompt: str, d: Decoding) -> Generation:
        body = self._body(prompt, d)
        last = ""
        for attempt in range(self.retries + 1):
            try:
                data = self._post(body)
                choice = data["choices"][0]
                usage = data.get("usage") or {}
                return Generation(str(choice.get("text") or ""), int(usage.get("prompt_tokens") or 0),
                                  int(usage.get("completion_tokens") or 0))  # fmt: skip
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
        if len(prompts) <= 1 or self.concurrency == 1:
            return [self._one(p, decoding) for p in prompts]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda p: self._one(p, decoding), prompts))


BACKENDS = ("transformers", "openai")


def open_backend(kind: str, model: str, **options: Any) -> Backend:
    """A backend by name: ``transformers`` (``model`` = checkpoint dir; options batch_size, device,
    dtype, attn_implementation, trust_remote_code) or ``openai`` (``model`` = served model name,
    or ``name@URL``; options base_url, api_key, timeout, retries, concurrency)."""
    if kind == "transformers":
        keys = ("batch_size", "device", "dtype", "attn_implementation", "trust_remote_code")
        return TransformersBackend(model, **{k: v for k, v in options.items() if k in keys and v is not None})
    if kind == "openai":
        name, sep, url = model.partition("@http")
        base = "http" + url if sep else options.get("base_url")
        if not base:
            raise BackendError(f"--backend openai needs --base-url (or MODEL@URL) for {model!r}")
        keys = ("api_key", "timeout", "retries", "concurrency")
        return OpenAIBackend(base, name, **{k: v for k, v in options.items() if k in keys and v is not None})
    raise BackendError(f"unknown backend {kind!r} (expected {', '.join(BACKENDS)})")
