"""Count the host round-trips of a device loop (for benchmarks and tests).

A device loop should not wait on the device every step: ``.item()``, ``float(t)``,
``bool(t)``, ``.cpu()``, ``.tolist()``, ``.numpy()`` each force one. :class:`HostSyncCounter`
counts those calls made from Python while it is active (it wraps the ``torch.Tensor`` methods,
so it works on the CPU where nothing actually waits), and on CUDA it also turns on
``torch.cuda.set_sync_debug_mode("warn")`` and counts the synchronising operations torch
itself reports (implicit ones included)::

    with HostSyncCounter() as c:
        simulate(...)
    c.calls          # {"item": 0, "__float__": 2, ...}
    c.total, c.cuda_syncs
"""

from __future__ import annotations

import warnings

import torch

_METHODS = ("item", "__float__", "__int__", "__bool__", "cpu", "tolist", "numpy")


class HostSyncCounter:
    """Context manager counting host synchronisations (see module docstring)."""

    def __init__(self):
        self.calls = dict.fromkeys(_METHODS, 0)
        self.cuda_syncs = 0
        self._orig = {}

    def __enter__(self) -> HostSyncCounter:
        for name in _METHODS:
            orig = getattr(torch.Tensor, name)
            self._orig[name] = orig

            def wrapped(t, *a, _orig=orig, _name=name, **k):
                self.calls[_name] += 1
                return _orig(t, *a, **k)

            setattr(torch.Tensor, name, wrapped)
        self._cuda = torch.cuda.is_available()
        if self._cuda:
            self._mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("warn")
            self._warn = warnings.catch_warnings(record=True)
            self._log = self._warn.__enter__()
            warnings.simplefilter("always")
        return self

    def __exit__(self, *exc) -> None:
        for name, orig in self._orig.items():
            setattr(torch.Tensor, name, orig)
        if self._cuda:
            torch.cuda.set_sync_debug_mode(self._mode)
            self.cuda_syncs = sum("synchroniz" in str(w.message) for w in self._log)
            self._warn.__exit__(*exc)

    @property
    def total(self) -> int:
        """Python-level host round-trips (the CUDA-reported ones are in ``cuda_syncs``)."""
        return sum(self.calls.values())
