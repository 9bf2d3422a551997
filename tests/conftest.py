"""Shared test setup.

Triton decides at *import* time whether its ``@triton.jit`` functions are compiled or
interpreted, so ``TRITON_INTERPRET=1`` must be set before anything imports triton. On a
machine without CUDA the Triton kernels are tested on the CPU under the interpreter; on a
CUDA machine they are compiled (set ``TRITON_INTERPRET`` yourself to override either).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# One torch thread per test process (as the CLI's --threads default): on a loaded 2-core
# machine the default thread count makes torch code spin and the suite many times slower.
torch.set_num_threads(int(os.environ.get("SGDYN_TEST_THREADS", "1")))


import pytest  # noqa: E402

KERNEL_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(params=[KERNEL_DEVICE], ids=lambda d: "cuda" if d == "cuda" else "cpu-interpret")
def kernel_device(request):
    """Where kernel tests run: CUDA (compiled Triton) when present, else the CPU under
    ``TRITON_INTERPRET=1``. Every Triton test takes its tensors from this device, so
    ``bench/gpu_run.py`` runs the same tests compiled on a GPU."""
    return torch.device(request.param)
