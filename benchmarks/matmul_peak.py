"""The matrix-product peak that MFU is measured against: square products of one dtype, repeated for at least
`seconds` so that clocks, caches and threads settle (ten quick products read 20-40% low on this CPU)."""

import time


def sync(device: str) -> None:
    """Wait for the GPU's queued work (a CPU's is done when the call returns)."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak_tflops(device: str, dtype_name: str, size: int, seconds: float = 1.0) -> float:
    import torch

    a = torch.randn(size, size, device=device, dtype=getattr(torch, dtype_name))
    b = torch.randn(size, size, device=device, dtype=getattr(torch, dtype_name))
    for _ in range(3):
        a @ b
    sync(device)
    repeats, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10 if device == "cuda" else 1):
            a @ b
        sync(device)
        repeats += 10 if device == "cuda" else 1
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12
