"""The boundary of ``sgdyn.theory``: array-library conversion and input validation, in one place.

Every public function of ``sgdyn.theory`` passes its array inputs through :func:`check_array`
(like scikit-learn's ``check_array``): one place refuses wrong shapes, non-finite values and
wrong signs with a one-line message that says what to do. The same helper remembers the
caller's array library (numpy, torch on any device, cupy, any array-API library, through
``array-api-compat``; nothing here imports torch or cupy), so results come back as the
caller's type:

- closed-form formulas (``theory.mlf``, the random-walk closed forms) compute in the caller's
  namespace with :func:`xp_array` (torch autograd flows through them);
- estimators (fits, medians, root finding, eigendecompositions of small matrices) compute in
  numpy float64 on the host with :func:`check_array` and hand their arrays back through
  :meth:`Caller.wrap` (detached from any autograd graph).

Python scalars and lists count as numpy. Mixed inputs take the one non-numpy library among
them (numpy arrays and scalars are moved to it); two different non-numpy libraries raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat as aac
import numpy as np

__all__ = ["Caller", "caller_of", "check_array", "check_positive", "to_numpy", "xp_array"]


def _is_array(x) -> bool:
    return aac.is_array_api_obj(x) and not isinstance(x, (int, float, complex, bool))


@dataclass(frozen=True)
class Caller:
    """The array library, device and floating dtype that results are handed back in."""

    xp: Any  # array-api-compat namespace
    device: Any
    dtype: Any  # a real floating dtype of ``xp``

    @property
    def is_numpy(self) -> bool:
        return aac.is_numpy_namespace(self.xp)

    def wrap(self, a):
        """A host numpy array (or scalar array) as the caller's array type, device, dtype."""
        a = np.asarray(a)
        if a.dtype == bool:
            if self.is_numpy:
                return a
            return self.xp.asarray(a, device=self.device)
        if not np.issubdtype(a.dtype, np.floating):
            return a if self.is_numpy else self.xp.asarray(a, device=self.device)
        if self.is_numpy:
            return a.astype(self.dtype, copy=False)
        return self.xp.asarray(np.ascontiguousarray(a), dtype=self.dtype, device=self.device)

    def asarray(self, x):
        """``x`` in the caller's namespace, on its device, in its floating dtype."""
        if _is_array(x) and aac.array_namespace(x) is self.xp:
            if x.dtype == self.dtype:
                return x
            return self.xp.astype(x, self.dtype)
        return self.xp.asarray(to_numpy(x), dtype=self.dtype, device=self.device)


def caller_of(*arrays) -> Caller:
    """The caller's library / device / dtype from the array arguments (others ignored)."""
    arrs = [a for a in arrays if _is_array(a)]
    others = [a for a in arrs if not aac.is_numpy_array(a)]
    if others:
        spaces = {id(aac.array_namespace(a)): aac.array_namespace(a) for a in others}
        if len(spaces) > 1:
            names = sorted(type(a).__module__.split(".")[0] for a in others)
            raise TypeError(
                f"arrays from different libraries ({', '.join(names)}) were mixed; pass all "
                "array arguments from one library (numpy arrays and Python numbers may be mixed "
                "with any one of them)"
            )
        xp = next(iter(spaces.values()))
        devices = {str(aac.device(a)): aac.device(a) for a in others}
        if len(devices) > 1:
            raise ValueError(
                f"array arguments live on different devices ({', '.join(devices)}); move them "
                "to one device"
            )
        device = next(iter(devices.values()))
        pool = others
    else:
        xp, device, pool = aac.array_namespace(np.empty(0)), "cpu", [a for a in arrs]
    floats = [a.dtype for a in pool if xp.isdtype(a.dtype, "real floating")]
    dtype = floats[0] if floats else xp.float64
    for d in floats[1:]:
        dtype = xp.result_type(dtype, d)
    return Caller(xp, device, dtype)


def to_numpy(x) -> np.ndarray:
    """A host numpy copy/view of ``x`` (torch: detached and moved to the CPU; cupy: copied)."""
    if aac.is_torch_array(x):
        return x.detach().cpu().numpy()
    if aac.is_cupy_array(x):
        return x.get()
    if _is_array(x) and not aac.is_numpy_array(x):
        return np.asarray(aac.to_device(x, "cpu"))
    return np.asarray(x)


_SIGNS = {
    None: (None, ""),
    "positive": (lambda v: v > 0, "positive"),
    "nonnegative": (lambda v: v >= 0, "non-negative"),
}


def check_array(
    x,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = 1,
    min_len: int = 0,
    finite: bool | str = True,
    sign: str | None = None,
    hint: str = "",
) -> np.ndarray:
    """``x`` as a host float64 numpy array after the checks; raises ``ValueError`` naming ``name``.

    ``ndim``: required number of dimensions (an int, a tuple of allowed ones, or None: any;
    a scalar is 0-d). Nothing is flattened: a 2-D array where 1-D is expected is refused.
    ``min_len``: minimum length of the first axis. ``finite``: True refuses NaN and +-inf,
    ``"allow_inf"`` refuses NaN only, False checks nothing. ``sign``: "positive",
    "nonnegative" or None. ``hint`` is appended to every message (what to do).
    """
    try:
        a = to_numpy(x).astype(np.float64, copy=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a real numeric array ({e})") from None
    tail = f"; {hint}" if hint else ""
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if a.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(
                f"{name} must be {want}, got shape {a.shape} (nothing is flattened: pass one "
                f"{'vector' if allowed == (1,) else 'array'} per call){tail}"
            )
    if a.ndim and a.shape[0] < min_len:
        raise ValueError(f"{name} needs at least {min_len} entries, got {a.shape[0]}{tail}")
    if finite:
        bad = np.isnan(a) if finite == "allow_inf" else ~np.isfinite(a)
        if bad.any():
            idx = np.argwhere(bad)[0]
            where = f" at index {tuple(int(i) for i in idx)}" if a.ndim else ""
            raise ValueError(f"{name} has a non-finite value ({a[tuple(idx)]}){where}{tail}")
    if sign is not None:
        ok_fn, word = _SIGNS[sign]
        with np.errstate(invalid="ignore"):
            bad = ~ok_fn(a) & ~np.isnan(a)
        if bad.any():
            idx = np.argwhere(bad)[0]
            where = f" at index {tuple(int(i) for i in idx)}" if a.ndim else ""
            raise ValueError(f"{name} must be {word}, got {a[tuple(idx)]}{where}{tail}")
    return a


def check_positive(value, name: str, *, allow_zero: bool = False, hint: str = "") -> float:
    """A finite positive (or non-negative) Python float; raises ``ValueError`` otherwise."""
    v = check_array(value, name, ndim=0, sign="nonnegative" if allow_zero else "positive",
                    hint=hint)  # fmt: skip
    return float(v)


def xp_array(
    x,
    name: str,
    caller: Caller,
    *,
    finite: bool | str = True,
    sign: str | None = None,
    min_ndim: int = 0,
    hint: str = "",
):
    """``x`` in the caller's namespace/device/dtype (autograd preserved) after the checks.

    The checks are those of :func:`check_array` (``finite``, ``sign``) done in the caller's
    namespace (one device-to-host sync for the verdict), without flattening anything.
    """
    try:
        a = caller.asarray(x)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a real numeric array ({e})") from None
    xp = caller.xp
    tail = f"; {hint}" if hint else ""
    if a.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got a scalar{tail}")
    if finite or sign is not None:
        v = a.detach() if aac.is_torch_array(a) else a
        if finite:
            bad = xp.isnan(v) if finite == "allow_inf" else ~xp.isfinite(v)
            if bool(xp.any(bad)):
                check_array(v, name, ndim=None, finite=finite, hint=hint)  # precise message
        if sign is not None:
            ok = (v > 0) if sign == "positive" else (v >= 0)
            if not bool(xp.all(ok | xp.isnan(v))):
                check_array(v, name, ndim=None, finite=False, sign=sign, hint=hint)
    return a
