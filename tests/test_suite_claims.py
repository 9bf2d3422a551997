"""Claim evaluation on synthetic cell records: each claim holds on a paper-like record, each
can fail, and missing data is 'not measured' (never a pass)."""

import copy

import pytest

from sgdyn.validation.studies.suite import claims
from sgdyn.validation.studies.suite.suites import available_suites, expand, load_suite, select


def _slope(s, e=0.1):
    return {"slope": s, "err": e, "n": 20}


GOOD = {
    "dataset": "mnist5k", "model": "mlp", "optimizer": "sgd", "batch_size": 50, "lr": 0.1,
    "phases": {"transition_epoch": 12, "window_reason": "transition"},
    "gamma": 2.6, "gamma_err": 0.1, "psi": 3.6, "psi_err": 0.2,
    "psi_eq": -1.9, "psi_eq_err": 0.2,
    "mlf": {"sigma_theta_vs_F": _slope(1.0), "M0_vs_F": _slope(-2.0),
            "product_vs_F": _slope(-2.0), "T0_vs_F": _slope(-2.0)},
    "sim": {"variants": {"network": {"psi": 3.4, "psi_err": 0.3}},
            "theory": {"psi_diffusive_limit": {"psi": 2.0, "psi_err": 0.05}}},
}  # fmt: skip

BREAK = {
    "two_phases": lambda r: r["phases"].update(transition_epoch=None),
    "gamma_band": lambda r: r.update(gamma=4.5),
    "psi_positive": lambda r: r.update(psi=-0.5),
    "equilibrium_opposite": lambda r: r.update(psi_eq=1.0),
    "mlf_sigma_theta": lambda r: r["mlf"].update(sigma_theta_vs_F=_slope(0.1)),
    "mlf_M0": lambda r: r["mlf"].update(M0_vs_F=_slope(-0.5)),
    "mlf_product": lambda r: r["mlf"].update(product_vs_F=_slope(-4.0)),
    "temperature_inverse": lambda r: r["mlf"].update(T0_vs_F=_slope(0.5)),
    "sim_reproduces_psi": lambda r: r["sim"]["variants"]["network"].update(psi=0.5),
    "diffusive_theory_2": lambda r: r["sim"]["theory"]["psi_diffusive_limit"].update(psi=3.5),
}
MISSING = {
    "two_phases": lambda r: r.pop("phases"),
    "gamma_band": lambda r: r.update(gamma=None),
    "psi_positive": lambda r: r.pop("psi"),
    "equilibrium_opposite": lambda r: r.update(psi_eq=float("nan")),
    "mlf_sigma_theta": lambda r: r.pop("mlf"),
    "mlf_M0": lambda r: r["mlf"].pop("M0_vs_F"),
    "mlf_product": lambda r: r["mlf"].update(product_vs_F={"slope": None}),
    "temperature_inverse": lambda r: r["mlf"].pop("T0_vs_F"),
    "sim_reproduces_psi": lambda r: r["sim"]["variants"].update(network={"psi": None,
                                                                         "error": "diverged"}),
    "diffusive_theory_2": lambda r: r["sim"].pop("theory"),
}  # fmt: skip


def test_every_claim_has_a_breaker_and_a_missing_case():
    assert set(BREAK) == set(claims.CLAIMS) == set(MISSING)


def test_paper_like_record_passes_every_claim():
    t = claims.evaluate({"a": copy.deepcopy(GOOD)})
    assert {k: v["status"] for k, v in t.items()} == dict.fromkeys(claims.CLAIMS, "holds")


@pytest.mark.parametrize("name", sorted(BREAK))
def test_each_claim_can_fail_and_says_by_how_much(name):
    bad = copy.deepcopy(GOOD)
    BREAK[name](bad)
    t = claims.evaluate({"good": copy.deepcopy(GOOD), "bad": bad})
    assert t[name]["status"] == "fails"
    assert t[name]["fails"] == ["bad"] and t[name]["holds"] == ["good"]
    assert t[name]["cells"]["bad"]["detail"]
    # psi enters two other claims (the contrast's sign, the simulator's agreement)
    linked = {"psi_positive": {"equilibrium_opposite", "sim_reproduces_psi"}}.get(name, set())
    others = {k: v["status"] for k, v in t.items() if k != name and k not in linked}
    assert set(others.values()) == {"holds"}, others


@pytest.mark.parametrize("name", sorted(MISSING))
def test_missing_data_is_not_measured_never_a_pass(name):
    rec = copy.deepcopy(GOOD)
    MISSING[name](rec)
    t = claims.evaluate({"x": rec})
    assert t[name]["status"] == "not measured" and t[name]["not_measured"] == ["x"]


def test_failed_cell_and_non_sgd_cells():
    t = claims.evaluate({"dead": {"failed": True, "error": "DataError: no folder"}})
    assert all(v["status"] == "not measured" for v in t.values())
    assert "no folder" in t["psi_positive"]["cells"]["dead"]["detail"]
    adam = copy.deepcopy(GOOD)
    adam.update(optimizer="adam", psi=-1.0)
    adam["sim"] = {"skipped": "the simulator integrates SGD"}
    t = claims.evaluate({"adam": adam})
    assert t["psi_positive"]["status"] == "not measured"  # not applicable, nothing measured
    assert t["psi_positive"]["not_applicable"] == ["adam"]
    assert t["sim_reproduces_psi"]["not_applicable"] == ["adam"]


def test_shipped_suites_parse_with_unique_keys():
    assert {"quick", "paper", "full"} <= set(available_suites())
    for name in available_suites():
        cells = expand(load_suite(name), data_root="data")
        assert len({c.key for c in cells}) == len(cells)
    quick = expand(load_suite("quick"))
    assert {c.params["dataset"] for c in quick} == {"digits", "mnist5k"}
    paper = expand(load_suite("paper"))
    assert {c.params["model"] for c in paper} >= {"mlp", "lenet-mnist", "lenet-cifar"}
    assert {c.params["optimizer"] for c in paper} == {"sgd", "momentum", "adam"}


def test_bad_suite_names_and_cell_keys_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        load_suite("nope")
    with pytest.raises(ValueError, match="unknown cell keys"):
        select(expand(load_suite("quick")), ["digits-nothing"])
    f = tmp_path / "s.toml"
    f.write_text('name = "s"\n[[grid]]\ndataset = ["digits"]\n')
    with pytest.raises(ValueError, match="lacks"):
        expand(load_suite(str(f)))
    f.write_text('name = "s"\n[defaults]\nbogus = 1\n[[grid]]\ndataset = ["digits"]\n'
                 'model = [{model = "mlp"}]\noptimizer = ["sgd"]\nbatch_lr = [[50, 0.1]]\n'
                 'seed = [0]\n')  # fmt: skip
    with pytest.raises(ValueError, match="unknown cell parameters"):
        expand(load_suite(str(f)))


def test_a_grid_may_pin_its_own_data_root(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('name = "s"\n[[grid]]\ndataset = ["cifar10"]\nmodel = [{model = "lenet-cifar"}]\n'
                 'optimizer = ["sgd"]\nbatch_lr = [[50, 0.1]]\nseed = [0]\n'
                 'data_root = "my/cifar"\n[[grid]]\ndataset = ["mnist"]\n'
                 'model = [{model = "mlp"}]\n'
                 'optimizer = ["sgd"]\nbatch_lr = [[50, 0.1]]\nseed = [0]\n')  # fmt: skip
    cells = {c.params["dataset"]: c.params for c in expand(load_suite(str(f)))}
    assert cells["cifar10"]["data_root"] == "my/cifar" and cells["mnist"]["data_root"] is None
    cells = {c.params["dataset"]: c.params for c in expand(load_suite(str(f)), data_root="d")}
    assert cells["cifar10"]["data_root"] == "d" == cells["mnist"]["data_root"]  # --data-root wins
