"""The catalogue of preprocessing steps and the validation of their parameters.

A step is a function `apply(image, label, params) -> (image, label)` and a dataclass of typed
parameters. Field metadata carries the limits that validation enforces: "min", "max", "choices",
"len" (exact length of a list) and "help". Steps that need dataset statistics also provide
`fit(image, label, params) -> partial` (one training case) and `combine(partials, params) -> dict`
(all training cases); the dict holds values for the step's own parameters, applied in a second pass.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import MedPrepError
from ..volume import Volume

ApplyFn = Callable[[Volume, Optional[Volume], Any], Tuple[Volume, Optional[Volume]]]


# A spatial step that moves the image in the world (a registration) puts the 4x4 RAS map from its
# input's world to its output's under this key; every other spatial step (orientation, resampling,
# crop and pad) keeps world positions, so its voxel map follows from the two grids alone.
WORLD_MAP_KEY = "MedPrepWorldMap"
INDEX_MAP_KEY = "MedPrepIndexMap"

@dataclass(frozen=True)
class StepSpec:
    name: str
    params: type
    apply: ApplyFn
    spatial: bool
    doc: str
    fit: Optional[Callable[[Volume, Optional[Volume], Any], Any]] = None
    combine: Optional[Callable[[List[Any], Any], Dict[str, Any]]] = None
    fitted: Tuple[str, ...] = ()
    normalizes: bool = False  # leaves intensities on a fixed, standardised scale (a trainer must not redo it)
    colour: bool = False  # takes RGB24 colour images: moves the three channels together, computes on none

    def needs_statistics(self, params: Any) -> bool:
        """True when a parameter that the dataset pass computes was not given."""
        return any(getattr(params, name) is None for name in self.fitted)


STEPS: Dict[str, StepSpec] = {}


def register(name: str, params: type, spatial: bool = False, fit: Optional[Callable] = None,
             combine: Optional[Callable] = None, fitted: Tuple[str, ...] = (),
             normalizes: bool = False, colour: bool = False) -> Callable[[ApplyFn], ApplyFn]:
    """Add a step to the catalogue; `spatial` steps change the grid and are applied to the label too.

    Dataset-level steps give `fit`, `combine` and the names of the parameters (`fitted`) they compute.
    `normalizes` marks intensity standardisation (z-score, min-max, ...): after it, an export for a
    trainer that normalises by itself (nnU-Net) tells it not to. `colour` marks a step that only moves
    voxels (orientation, resampling, crop and pad), which a colour image can go through channel by
    channel; every other step refuses colour images.
    """
    def wrap(fn: ApplyFn) -> ApplyFn:
        STEPS[name] = StepSpec(name, params, fn, spatial, (fn.__doc__ or "").strip().split("\n")[0],
                               fit, combine, fitted, normalizes, colour)
        return fn
    return wrap


def get_step(name: str, where: Optional[str] = None) -> StepSpec:
    from . import steps  # noqa: F401 - importing the step modules fills STEPS

    if name not in STEPS:
        raise MedPrepError(f"unknown preprocessing step '{name}'", where,
                           f"known steps: {', '.join(sorted(STEPS))}")
    return STEPS[name]


def _coerce(value: Any, hint: Any, label: str, where: Optional[str]) -> Any:
    """Check `value` against a type hint (float, int, str, bool, Optional[...], List[...])."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for alt in inner:
            try:
                return _coerce(value, alt, label, where)
            except MedPrepError as exc:
                errors.append(exc)
        raise errors[0]
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise MedPrepError(f"parameter {label} must be a list, got {value!r}", where)
        return [_coerce(v, args[0], f"{label}[{i}]", where) for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise MedPrepError(f"parameter {label} must be true or false, got {value!r}", where)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MedPrepError(f"parameter {label} must be an integer, got {value!r}", where)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MedPrepError(f"parameter {label} must be a number, got {value!r}", where)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise MedPrepError(f"parameter {label} must be a string, got {value!r}", where)
        return value
    return value


def _check_limits(value: Any, meta: Dict[str, Any], label: str, where: Optional[str]) -> None:
    if value is None:
        return
    if "len" in meta and isinstance(value, list) and len(value) not in meta["len"]:
        allowed = " or ".join(str(n) for n in meta["len"])
        raise MedPrepError(f"parameter {label} must have {allowed} values, got {len(value)}", where)
    items = value if isinstance(value, list) else [value]
    for item in items:
        if "choices" in meta and item not in meta["choices"]:
            raise MedPrepError(f"parameter {label} is {item!r}", where,
                               f"choose one of: {', '.join(map(str, meta['choices']))}")
        if "min" in meta and item < meta["min"]:
            raise MedPrepError(f"parameter {label} = {item} is below its minimum {meta['min']}", where)
        if "max" in meta and item > meta["max"]:
            raise MedPrepError(f"parameter {label} = {item} is above its maximum {meta['max']}", where)


def make_params(name: str, cls: type, raw: Dict[str, Any], where: Optional[str] = None) -> Any:
    """Validated instance of the parameter dataclass `cls` of step (or section) `name` from a plain mapping."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise MedPrepError(f"step '{name}' has no parameter '{unknown[0]}'", where,
                           f"its parameters are: {', '.join(fields) or 'none'}")
    values = {}
    for key, fld in fields.items():
        if key in raw:
            label = f"{name}.{key}"
            values[key] = _coerce(raw[key], hints[key], label, where)
            _check_limits(values[key], dict(fld.metadata), label, where)
        elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
            raise MedPrepError(f"step '{name}' needs parameter '{key}'", where,
                               str(fld.metadata.get("help", "")) or None)
    params = cls(**values)
    check = getattr(params, "check", None)
    if check is not None:
        problem = check()
        if problem:
            raise MedPrepError(f"step '{name}': {problem}", where)
    return params


def describe() -> Dict[str, Dict[str, Any]]:
    """Every step with its parameters (type, default, limits, help): what a UI needs to build a form."""
    from . import steps  # noqa: F401 - importing the step modules fills STEPS

    out: Dict[str, Dict[str, Any]] = {}
    for name in sorted(STEPS):
        spec = STEPS[name]
        hints = typing.get_type_hints(spec.params)
        params = {}
        for f in dataclasses.fields(spec.params):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            params[f.name] = {"type": str(hints[f.name]).replace("typing.", ""), "default": default,
                              "required": f.default is dataclasses.MISSING and
                              f.default_factory is dataclasses.MISSING, **dict(f.metadata)}
        out[name] = {"doc": spec.doc, "spatial": spec.spatial, "dataset_statistics": list(spec.fitted),
                     "normalizes": spec.normalizes, "colour": spec.colour, "params": params}
    return out
