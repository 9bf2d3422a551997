"""sgdyn: capture, measure and simulate the stochastic dynamics of SGD.

Subpackages (each a top-level folder of the repository):

- :mod:`sgdyn.theory`     formulas and estimators on arrays (numpy), no model code
- :mod:`sgdyn.kernels`    Triton kernels with plain-torch twins, streaming PCA, trajectory buffers
- :mod:`sgdyn.simulator`  random-landscape (MLF) ensembles and integrators
- :mod:`sgdyn.validation` real networks: data, models, training, probes, experiments, CLI
"""

__version__ = "0.1.0"
