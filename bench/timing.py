"""Timing of forward passes, shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import onnxruntime
import torch

Runner = Callable[[torch.Tensor], torch.Tensor]


def alternating_latencies(
    runners: dict[str, Runner], inputs: torch.Tensor, warmup: int, iterations: int
) -> dict[str, list[float]]:
    """Seconds per call of each runner on `inputs`. The runners take turns, so a busy
    machine slows all of them alike."""
    latencies: dict[str, list[float]] = {name: [] for name in runners}
    with torch.inference_mode():
        for _ in range(warmup):
            for run in runners.values():
                run(inputs)
        for _ in range(iterations):
            for name, run in runners.items():
                started = time.perf_counter()
                run(inputs)
                latencies[name].append(time.perf_counter() - started)
    return latencies


def speed(batch: int, seconds: list[float]) -> dict[str, float]:
    """Images per second and p50/p95 milliseconds of calls on `batch` images each."""
    milliseconds = np.array(seconds) * 1000
    return {
        "images_per_s": batch * len(seconds) / sum(seconds),
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p95_ms": float(np.percentile(milliseconds, 95)),
    }


def raw_onnxruntime(path, threads: int) -> Runner:
    """The ONNX model in a plain InferenceSession with default options: the yardstick
    the served backend is held to."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"]
    )
    return lambda batch: torch.from_numpy(session.run(None, {"input": batch.numpy()})[0])
