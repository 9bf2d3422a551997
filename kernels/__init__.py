"""GPU kernels (Triton) with plain-torch twins, and the on-device trajectory tools.

Every kernel lives beside its torch twin; :mod:`sgdyn.kernels.dispatch` picks Triton on CUDA
tensors and the twin elsewhere (``SGDYN_BACKEND=torch|triton`` or :func:`use_backend`
forces one).
"""

from .dispatch import backend_for, use_backend
from .streaming_pca import StreamingPCA
from .trajectory import TrajectoryBuffer

__all__ = ["StreamingPCA", "TrajectoryBuffer", "backend_for", "use_backend"]
