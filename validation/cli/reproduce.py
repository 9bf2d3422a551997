"""Run the paper's protocol (Fig 1 A-D, Fig S1; Fig 2 / S2 / Eq 16 when the landscape
stage is on; Figs 3 and 5 from the mechanism stage unless --no-mechanism) and write
summary.json, arrays.npz, PNG figures, report.md and report.html into --out.
Defaults: 784-50-50-10 MLP without bias, SGD alpha=0.1, B=50, on the embedded
5,000-image MNIST subset (or the full MNIST with --dataset mnist --data-root DIR), a 10-epoch
window starting in the exploration phase, PCA of the 2,500 weights between the hidden layers.
capture.pt (keyed on the capture settings and the data) lets a rerun skip training, also
when only analysis options (--rank-range, --landscape-modes, ...) changed.
"""

from __future__ import annotations

from .common import add_common_options, add_window_options, execute, int_list

NAME = "reproduce"
HELP = "run the paper's protocol end to end into a run directory"
DATASETS = ("mnist5k", "mnist", "digits", "cifar10")
MODELS = ("mlp", "lenet-mnist", "lenet-cifar")


def add_arguments(p) -> None:
    add_common_options(p)
    p.add_argument(
        "--quick",
        action="store_true",
        help="reduced protocol on 8x8 digits (seconds): 4-epoch window, ranks 5-60, "
        "30 landscape modes, 600 Langevin steps; options given explicitly still "
        "apply",
    )
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default="mnist5k",
        help="data (mnist5k: the embedded MNIST subset)",
    )
    p.add_argument("--data-root", default=None, help="torchvision-layout / ImageFolder folder")
    p.add_argument(
        "--per-class",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N samples of every class (e.g. 500: 5,000 CIFAR-10 images)",
    )
    p.add_argument("--model", choices=MODELS, default="mlp", help="network")
    p.add_argument(
        "--hidden",
        type=int_list,
        default=(50, 50),
        help="comma-separated MLP hidden widths, e.g. 50,50",
    )
    p.add_argument(
        "--optimizer", choices=["sgd", "momentum", "adam"], default="sgd", help="optimizer"
    )
    p.add_argument("--lr", type=float, default=0.1, help="learning rate alpha")
    p.add_argument("--batch-size", type=int, default=50, help="minibatch size B")
    add_window_options(p)
    p.add_argument(
        "--probe",
        default=None,
        help="parameter name to record (default: the weights between the hidden layers)",
    )
    p.add_argument(
        "--rank-range",
        type=int_list,
        default=(20, 200),
        metavar="LO,HI",
        help="rank range of the gamma fit",
    )
    p.add_argument(
        "--no-landscape",
        dest="landscape",
        action="store_false",
        default=True,
        help="skip the landscape stage (Fig 2, S2, Eq 16)",
    )
    p.add_argument(
        "--landscape-modes",
        type=int,
        default=200,
        help="PCA directions whose flatness is measured (conv probes cost far more per direction)",
    )
    p.add_argument(
        "--no-mechanism",
        dest="mechanism",
        action="store_false",
        default=True,
        help="skip the mechanism stage (MLF ensemble Fig 3, Eq 14, active temperature Fig 5)",
    )
    p.add_argument(
        "--mechanism-epochs",
        type=int,
        default=2,
        help="epoch partitions whose minibatches form the MLF ensemble of Fig 3",
    )
    p.add_argument(
        "--langevin-steps",
        type=int,
        default=6000,
        help="cap on the Langevin equilibrium run's steps",
    )


def _describe(s):
    p, ph = s["pca"], s["phases"]
    line = (
        f"gamma = {p['gamma']:.3f} +- {p['gamma_err_boot']:.3f}, n90 = {p['n90_excl_pc1']}, "
        f"var1/var2 = {p['var1_over_var2']:.3g}, transition epoch = {ph['transition_epoch']}"
    )
    if "flatness" in s:
        line += f", psi = {s['flatness']['psi']:.2f}"
    if "mechanism" in s:
        line += f", psi_D = {s['mechanism']['psi_D']:.2f}"
    return [line + f", total {s['timings']['total_s']:.1f} s"]


def run(args) -> int:
    from sgdyn.validation.studies.reproduce.pipeline import QUICK, ReproduceConfig, run_reproduce

    return execute(
        args, config_cls=ReproduceConfig, run=run_reproduce, quick=QUICK, describe=_describe
    )
