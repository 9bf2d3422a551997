"""Random-landscape (MLF ensemble) simulator: ensembles, samplers and integrators (Section IV)."""
