"""The paper's claims evaluated on cell records (plain dicts; no theory import).

Each claim reads numbers a cell record holds (:func:`sgdyn.validation.studies.suite.cell.
run_cell`) and answers, per cell, ``holds``, ``fails`` (with by how much) or ``not
measured`` (the number is missing, or the cell failed): missing data is never a pass. A
claim holds on the suite when it holds on every cell it applies to and at least one cell
measured it.

| claim | per cell |
|---|---|
| ``two_phases`` | a fast-learning -> exploration transition was detected (Fig S1) |
| ``gamma_band`` | gamma within ``GAMMA_BAND`` (the paper: 2-3) allowing 2 standard errors |
| ``psi_positive`` | psi > 0 by 2 standard errors (SGD-family cells: sgd, momentum) |
| ``equilibrium_opposite`` | Langevin at the matched temperature gives psi_eq < 0 (Eq 16) |
| ``mlf_sigma_theta`` | sigma_theta,i ~ F_i^1 (Fig 3B) |
| ``mlf_M0`` | M0_ii ~ F_i^-2 (Fig 3B) |
| ``mlf_product`` | (M0_ii sigma_theta,i)^2 ~ F_i^-2 (Fig 3B: sigma_i^2 ~ F_i^-2) |
| ``temperature_inverse`` | T_i(0) decreases with F_i (Fig 5B; exponent < 0) |
| ``sim_reproduces_psi`` | simulator-from-network psi within 2 combined errors of the network's |
| ``diffusive_theory_2`` | the linearised diffusive theory on the cell's ensemble gives psi = 2 |

"within error" for an exponent: |measured - expected| <= max(2 standard errors, ``SLOPE_TOL``).
"""

from __future__ import annotations

import math

GAMMA_BAND = (2.0, 3.0)
SLOPE_TOL = 0.5
SGD_FAMILY = ("sgd", "momentum")
PRIMARY_SIM = "network"


def _get(rec, *path):
    cur = rec
    for k in path:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    if isinstance(cur, float) and not math.isfinite(cur):
        return None
    return cur


def _exponent(rec, path, expected, what):
    slope = _get(rec, *path, "slope")
    err = _get(rec, *path, "err")
    if slope is None:
        return "not measured", None, f"no {what} exponent"
    tol = max(2 * (err or 0.0), SLOPE_TOL)
    dev = slope - expected
    st = "holds" if abs(dev) <= tol else "fails"
    return (
        st,
        slope,
        (
            f"{what} exponent {slope:.2f} +- {err or 0:.2f} (expected {expected:g}; "
            f"off by {dev:+.2f}, tolerance {tol:.2f})"
        ),
    )


def two_phases(rec):
    t = _get(rec, "phases", "transition_epoch")
    reason = _get(rec, "phases", "window_reason")
    if reason is None and t is None:
        return "not measured", None, "no phase record"
    if t is None:
        return "fails", None, f"no transition detected ({reason})"
    return "holds", t, f"transition at epoch {t}"


def gamma_band(rec):
    g, e = _get(rec, "gamma"), _get(rec, "gamma_err") or 0.0
    if g is None:
        return "not measured", None, "no gamma"
    lo, hi = GAMMA_BAND
    dist = max(lo - g, g - hi, 0.0)
    st = "holds" if dist <= 2 * e else "fails"
    return st, g, f"gamma {g:.2f} +- {e:.2f} vs band {lo:g}-{hi:g} (outside by {dist:.2f})"


def psi_positive(rec):
    if rec.get("optimizer") not in SGD_FAMILY:
        return "not applicable", None, f"optimizer {rec.get('optimizer')} is not SGD-family"
    p, e = _get(rec, "psi"), _get(rec, "psi_err") or 0.0
    if p is None:
        return "not measured", None, "no psi"
    st = "holds" if p - 2 * e > 0 else "fails"
    return st, p, f"psi {p:.2f} +- {e:.2f} ({p / e if e else float('inf'):.1f} errors from 0)"


def equilibrium_opposite(rec):
    p, pe = _get(rec, "psi"), _get(rec, "psi_eq")
    e = _get(rec, "psi_eq_err") or 0.0
    if p is None or pe is None:
        why = _get(rec, "equilibrium_error") or "no psi or no equilibrium psi"
        return "not measured", None, why
    st = "holds" if (pe + 2 * e < 0 and p > 0) else "fails"
    return st, pe, f"psi_eq {pe:.2f} +- {e:.2f} vs psi {p:.2f} (opposite sign expected)"


def mlf_sigma_theta(rec):
    return _exponent(rec, ("mlf", "sigma_theta_vs_F"), 1.0, "sigma_theta vs F")


def mlf_M0(rec):
    return _exponent(rec, ("mlf", "M0_vs_F"), -2.0, "M0 vs F")


def mlf_product(rec):
    return _exponent(rec, ("mlf", "product_vs_F"), -2.0, "(M0 sigma_theta)^2 vs F")


def temperature_inverse(rec):
    s, e = _get(rec, "mlf", "T0_vs_F", "slope"), _get(rec, "mlf", "T0_vs_F", "err") or 0.0
    if s is None:
        return "not measured", None, "no active temperature"
    st = "holds" if s + 2 * e < 0 else "fails"
    return st, s, f"T_i(0) ~ F_i^{s:.2f} +- {e:.2f} (negative expected)"


def sim_reproduces_psi(rec):
    if _get(rec, "sim", "skipped"):
        return "not applicable", None, _get(rec, "sim", "skipped")
    p, pe = _get(rec, "psi"), _get(rec, "psi_err") or 0.0
    v = _get(rec, "sim", "variants", PRIMARY_SIM)
    if p is None or v is None or v.get("psi") is None:
        why = (v or {}).get("error") or _get(rec, "sim", "error") or "no simulated psi"
        return "not measured", None, why
    s, se = v["psi"], v.get("psi_err") or 0.0
    comb = math.hypot(pe, se)
    dev = s - p
    st = "holds" if abs(dev) <= 2 * comb else "fails"
    n_err = dev / comb if comb else float("inf")
    return (
        st,
        s,
        (
            f"psi_sim {s:.2f} +- {se:.2f} vs psi_real {p:.2f} +- {pe:.2f} "
            f"({n_err:+.1f} combined errors)"
        ),
    )


def diffusive_theory_2(rec):
    t = _get(rec, "sim", "theory", "psi_diffusive_limit")
    if t is None or t.get("psi") is None:
        return "not measured", None, "no theory prediction"
    p, e = t["psi"], t.get("psi_err") or 0.0
    dev = p - 2.0
    tol = max(2 * e, SLOPE_TOL)
    st = "holds" if abs(dev) <= tol else "fails"
    return st, p, f"linearised diffusive psi {p:.2f} +- {e:.2f} (2 expected; off by {dev:+.2f})"


_BAND = f"{GAMMA_BAND[0]:g}-{GAMMA_BAND[1]:g}"
CLAIMS = {
    "two_phases": (
        "two phases exist (fast learning, then exploration; Fig S1)", two_phases),
    "gamma_band": (
        f"PCA spectrum exponent gamma within {_BAND} (Fig 1A)", gamma_band),
    "psi_positive": (
        "inverse variance-flatness relation psi > 0 for SGD-family cells (Fig 2D)",
        psi_positive),
    "equilibrium_opposite": (
        "equilibrium (Langevin) contrast has the opposite sign (Eq 16)",
        equilibrium_opposite),
    "mlf_sigma_theta": ("MLF: sigma_theta,i ~ F_i (Fig 3B)", mlf_sigma_theta),
    "mlf_M0": ("MLF: M0_ii ~ F_i^-2 (Fig 3B)", mlf_M0),
    "mlf_product": ("MLF: (M0_ii sigma_theta,i)^2 ~ F_i^-2 (Fig 3B)", mlf_product),
    "temperature_inverse": (
        "active temperature T_i(0) inverse in F_i (Fig 5B)", temperature_inverse),
    "sim_reproduces_psi": (
        "simulator-from-network reproduces the network's psi within error",
        sim_reproduces_psi),
    "diffusive_theory_2": (
        "the linearised diffusive theory gives psi = 2 (Sec IV)", diffusive_theory_2),
}  # fmt: skip


def evaluate(records: dict) -> dict:
    """``records``: {cell key: record, or None / {"failed": True, "error": ...} for a failed
    cell} ->
    {claim: {description, status, holds, fails, not_measured, not_applicable, cells}}.

    Suite status: ``holds`` (every applicable cell holds, at least one measured), ``fails``
    (some cell fails), ``not measured`` (no cell measured it)."""
    table = {}
    for name, (desc, fn) in CLAIMS.items():
        per = {}
        for key, rec in records.items():
            if not isinstance(rec, dict) or rec.get("failed"):
                why = rec.get("error", "") if isinstance(rec, dict) else ""
                per[key] = {"status": "not measured", "value": None,
                            "detail": f"cell failed: {why}"}  # fmt: skip
                continue
            st, val, detail = fn(rec)
            per[key] = {"status": st, "value": val, "detail": detail}
        by = {s: [k for k, v in per.items() if v["status"] == s]
              for s in ("holds", "fails", "not measured", "not applicable")}  # fmt: skip
        if by["fails"]:
            status = "fails"
        elif by["holds"]:
            status = "holds"
        else:
            status = "not measured"
        table[name] = {
            "description": desc,
            "status": status,
            "holds": by["holds"],
            "fails": by["fails"],
            "not_measured": by["not measured"],
            "not_applicable": by["not applicable"],
            "cells": per,
        }
    return table
