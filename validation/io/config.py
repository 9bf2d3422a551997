"""Study configs as plain data: what a run directory records and ``--config FILE`` reruns.

:class:`StudyConfig` is a mixin for a study's ``@dataclass`` config: ``as_dict`` gives plain
JSON types (tuples become lists), ``from_dict`` rebuilds the config from a saved ``config``
(lists back to tuples, unknown keys refused), and ``device="auto"`` resolves to ``cuda`` when
torch sees a CUDA device, else ``cpu``, so the recorded config says what ran (a CUDA device
where there is none is refused on construction).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .rundir import plain


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``; refuse CUDA where there is none."""
    import torch

    name = str(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--device {name!r} is not a torch device (use auto, cpu or cuda)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"--device {name} requested but torch sees no CUDA device; use --device cpu or auto"
        )
    return name


class StudyConfig:
    """Mixin for a study's dataclass config (module docstring)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list) and "tuple" in str(f.type):
                setattr(self, f.name, tuple(v))
        if getattr(self, "device", None) is not None:
            self.device = resolve_device(self.device)

    def as_dict(self) -> dict:
        return plain(dataclasses.asdict(self))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict, **overrides):
        """The config ``d`` (e.g. a run's saved ``config``) with ``overrides`` applied."""
        names = set(cls.field_names())
        unknown = sorted(set(d) - names) + sorted(set(overrides) - names)
        if unknown:
            raise ValueError(
                f"{cls.__name__} has no setting(s) {unknown}: is this config from another "
                "command or another sgdyn version?"
            )
        return cls(**{**d, **overrides})


def load_config_file(path, command: str) -> dict:
    """The ``config`` of a run's ``summary.json`` (or a JSON file that is a config)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ValueError(f"--config {path}: no such file") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--config {path}: not a readable JSON file ({e})") from e
    if not isinstance(obj, dict):
        raise ValueError(f"--config {path}: expected a JSON object")
    cmd = obj.get("command")
    if cmd is not None and cmd != command:
        raise ValueError(f"--config {path} is the config of `sgdyn {cmd}`, not `sgdyn {command}`")
    cfg = obj.get("config", obj)
    if not isinstance(cfg, dict):
        raise ValueError(f"--config {path}: its 'config' is not a JSON object")
    return {k: v for k, v in cfg.items() if k != "command"}
