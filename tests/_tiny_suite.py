"""Shared pieces of the reduced validation suites the suite tests write to TOML: defaults that
make a digits cell run in seconds, and one [[grid]] block per call."""

DEFAULTS = """[defaults]
hidden = [20, 20]
window_start = 8
window_epochs = 2
max_epochs = 12
rank_range = [2, 12]
n_theta_saved = 12
landscape_modes = 8
langevin_steps = 100
quick = true
ensemble_modes = 6
replicas = 6
sim_max_steps = 300
"""


def suite_toml(name: str, description: str, *grids: str) -> str:
    """A suite file: ``name``, ``description``, the fast defaults and the ``grids``."""
    return f'name = "{name}"\ndescription = "{description}"\n{DEFAULTS}' + "".join(grids)


def grid(optimizer: str, batch: int, lr: float, seeds=(0,), dataset="digits",
         model="mlp", tag="mlp2") -> str:  # fmt: skip
    """One [[grid]] block: ``dataset`` x ``model`` x ``optimizer`` at (B, alpha) x ``seeds``."""
    return (
        f'[[grid]]\ndataset = ["{dataset}"]\nmodel = [{{ model = "{model}", tag = "{tag}" }}]\n'
        f'optimizer = ["{optimizer}"]\nbatch_lr = [[{batch}, {lr}]]\n'
        f"seed = [{', '.join(str(s) for s in seeds)}]\n"
    )
