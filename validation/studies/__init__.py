"""One module (or subpackage) per experiment: a config, ``run``, its figures and report.

``capture`` is the shared first step (train into the exploration phase, record a window);
``reproduce`` is the main job; ``flatness_grid`` is Fig 2D; ``simulate`` the theory study.
"""
