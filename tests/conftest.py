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
