"""Real networks: data, models, training with capture, probes, experiments and the CLI.

The only subpackage that knows about datasets, models, files and the command line.
"""
