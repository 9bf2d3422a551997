"""GPU kernels (Triton) with plain-torch twins, and the on-device trajectory tools.

Every kernel lives beside its torch twin; :mod:`sgdyn.kernels.dispatch` picks Triton on CUDA
tensors and the twin elsewhere (``SGDYN_BACKEND=torch|triton`` or :func:`use_backend`
forces one).
"""

from .capture_hooks import (
    collect_layer_io,
    per_sample_grad_norms,
    per_sample_grads,
    per_sample_projections,
)
from .dispatch import backend_for, use_backend
from .mlf_step import mlf_matvec2, philox_keys
from .per_sample import (
    conv2d_per_sample_grads,
    conv2d_projections,
    linear_grad_norms,
    linear_per_sample_grads,
    linear_projections,
)
from .sketch_pca import SketchPCA
from .streaming_pca import StreamingPCA
from .trajectory import TrajectoryBuffer

__all__ = [
    "SketchPCA",
    "StreamingPCA",
    "TrajectoryBuffer",
    "backend_for",
    "collect_layer_io",
    "conv2d_per_sample_grads",
    "conv2d_projections",
    "linear_grad_norms",
    "linear_per_sample_grads",
    "linear_projections",
    "mlf_matvec2",
    "per_sample_grad_norms",
    "per_sample_grads",
    "per_sample_projections",
    "philox_keys",
    "use_backend",
]
