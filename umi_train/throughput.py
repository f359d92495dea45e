"""Throughput figures for the run summary and the benchmark: tokens/s, MFU, peak GPU memory.

MFU counts 6·N FLOPs per trained token (forward 2N + backward 4N; 4·N with LoRA, which computes no
weight gradients for the frozen N), over the GPU's dense bf16 peak. Attention FLOPs and activation
recomputation are left out, so it is a lower bound, comparable between runs and with TRL.
"""

from __future__ import annotations

from typing import Any

# dense bf16 tensor-core peak, TFLOP/s (vendor figures; H100/H200 SXM)
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def peak_tflops(device_name: str | None) -> float | None:
    if not device_name:
        return None
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)


def count_params(model) -> tuple[int, int]:
    """(all parameters, trainable parameters); tied weights counted once."""
    seen: dict[int, Any] = {}
    for p in model.parameters():
        seen.setdefault(id(p), p)
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return total, trainable


def flops_per_token(total: int, trainable: int) -> int:
    return (6 if trainable >= total * 0.5 else 4) * total


def mfu(tokens_per_second: float | None, fpt: int, peak: float | None) -> float | None:
    if not tokens_per_second or not peak:
        return None
    return round(fpt * tokens_per_second / (peak * 1e12), 4)


def cuda_device() -> tuple[str | None, float | None]:
    """(device name, peak bf16 TFLOP/s) of CUDA device 0, or (None, None)."""
    import torch

    if not torch.cuda.is_available():
        return None, None
    name = torch.cuda.get_device_name(0)
    return name, peak_tflops(name)


def peak_memory_gb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)
