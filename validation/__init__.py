"""Real networks: data, models, training, probes, studies, run directories and the CLI.

The only subpackage that knows about datasets, models, files and the command line. Rooms:

- ``data``, ``models``, ``training``: what a run is made of;
- ``probes``: what attaches to a user's model (recorder, network landscape, Langevin, PC1);
- ``studies``: one per experiment (capture, reproduce, flatness grid, simulate);
- ``io``: run directories; ``cli``: the ``sgdyn`` command, one thin module per subcommand.

The flat module names of sgdyn 0.1 (``sgdyn.validation.recorder``, ``.landscape_net``,
``.train``, ...) still import: they are aliases of the modules that now hold the code.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

# old flat module -> where it lives now
LEGACY_MODULES = {
    "train": "training.loop",
    "recorder": "probes.recorder",
    "landscape_net": "probes.network_landscape",
    "langevin": "probes.langevin",
    "pc1": "probes.pc1",
    "experiment": "studies.capture",
    "reproduce": "studies.reproduce.pipeline",
    "landscape_stage": "studies.reproduce.landscape_stage",
    "plots": "studies.reproduce.figures",
    "report": "studies.reproduce.report",
    "sim_report": "studies.simulate",
    "rundir": "io.rundir",
    "cmd_reproduce": "cli.reproduce",
    "cmd_simulate": "cli.simulate",
    "cmd_flatness_grid": "cli.flatness_grid",
}


class _LegacyAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import ``sgdyn.validation.<old>`` as the module that now holds its code (lazily)."""

    def find_spec(self, fullname, path=None, target=None):
        prefix = __name__ + "."
        if not fullname.startswith(prefix) or fullname[len(prefix) :] not in LEGACY_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{LEGACY_MODULES[spec.name.rsplit('.', 1)[1]]}")

    def exec_module(self, module):  # the target module is already executed
        pass


if not any(isinstance(f, _LegacyAlias) for f in sys.meta_path):
    sys.meta_path.append(_LegacyAlias())
