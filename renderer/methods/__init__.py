"""Guidance methods: one small class per method, found by name.

A method is a ``GuidanceMethod`` subclass plus the dataclass of its hyperparameters, both in one
module of this folder named after the method (``refocus.py`` holds "refocus"). The sampling loop
(``plan_and_render.renderer.guidance.Guider``) calls the hooks of the chosen methods and never asks
which methods it holds, so adding a method is adding a module here. Another package adds one through
an entry point in the group ``plan_and_render.methods``:

    [project.entry-points."plan_and_render.methods"]
    sparkle = "my_package.sparkle:Sparkle"    # a GuidanceMethod subclass with name = "sparkle"

Names are known without importing torch (module names and entry point names), so settings can be
validated cheaply; a method's module is imported when its class or its config is first needed.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import fields, replace
from functools import cache
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar, get_type_hints

from plan_and_render.errors import UsageError

if TYPE_CHECKING:
    import torch

ENTRY_POINT_GROUP = "plan_and_render.methods"
NONE = "none"  # plain classifier-free guidance: no method


# ---------------------------------------------------------------------------
# the hooks a method implements
# ---------------------------------------------------------------------------

class GuidanceMethod:
    """One guidance method in one render.

    The Guider makes an instance per render with ``config`` (the method's dataclass, the render's
    options applied) and ``guider`` (what methods share: layout, masks, layers, step count, batch,
    and the helpers ``guide_pass``, ``descend``, ``abar``). Every latent a hook sees or returns is
    the DDIM-scaled one (the UNet's input), whatever the scheduler. At each step i it calls, in
    this order:

    1. ``before_cfg(i, t, x, cond_unet)``: gradient steps on the latent, through extra
       conditional passes that capture ``guide_captures()``; returns the latent (x itself if unmoved).
    2. ``cfg_pass(i, state)``: set up the classifier-free guidance pass (add one of
       ``cfg_captures()`` to ``state.captures``, switch masking on); return True to have the
       conditional half run alone with its graph to the latent.
    3. ``after_cfg(i, x)``: after that pass; ``x`` is the latent it saw, with its graph when some
       method asked for one (else None).
    4. ``step_options(i)``: keyword arguments for the scheduler's step (those it does not take are
       dropped).
    5. ``after_step(i, x)``: after the scheduler step, on the next step's latent; returns it.

    Once per render, after the attention processors are installed: ``setup(state)``. Combined
    methods run each hook in ascending ``order`` (refocus, excite, backward for the gradient steps).
    Captures are keyed by what they hold; methods that use the same key share one capture.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    order: ClassVar[int] = 100

    def __init__(self, config, guider) -> None:
        self.config, self.guider = config, guider

    # -- what to install -------------------------------------------------------
    def guide_captures(self) -> dict:
        """Captures (``attention.Capture``) the extra conditional passes of gradient steps take."""
        return {}

    def cfg_captures(self) -> dict:
        """Captures this method switches on inside the CFG pass (in ``cfg_pass``)."""
        return {}

    def masked_layers(self) -> set[str]:
        """Layers whose attention processor must be able to mask scores (RCA)."""
        return set()

    def setup(self, state) -> None:
        """Called once the processors are installed, only when the plan has guidable objects."""

    # -- the sampling step -----------------------------------------------------
    def before_cfg(self, i: int, t, latents: "torch.Tensor", cond_unet) -> "torch.Tensor":
        return latents

    def cfg_pass(self, i: int, state) -> bool:
        return False

    def after_cfg(self, i: int, x: "torch.Tensor | None") -> None:
        """Read what the CFG pass captured."""

    def step_options(self, i: int) -> dict:
        return {}

    def after_step(self, i: int, x: "torch.Tensor") -> "torch.Tensor":
        return x

    # -- what the method measures and reports ------------------------------------
    def loss(self, maps: dict, early: bool = True):
        """(loss at scale 1 summed over the images, stopping statistic) from the captured ``maps``;
        None for a method without a loss."""
        return None

    def report(self) -> dict[str, float]:
        """Losses this method adds to ``RenderResult.losses`` beyond those its gradient steps record."""
        return {}


def events_at(i: int, steps: int, events) -> bool:
    """Whether step i of ``steps`` holds one of ``events`` given in 50-step units."""
    return any(int(e * steps / 50) == i for e in events)


# ---------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------

def builtin_methods() -> tuple[str, ...]:
    """The methods of this folder, by module name (no import)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


@cache
def _plugins() -> dict[str, metadata.EntryPoint]:
    """Entry points of other packages (read once per process); a built-in name cannot be taken."""
    builtin = set(builtin_methods())
    return {ep.name.strip().lower(): ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
            if ep.name.strip().lower() not in builtin | {NONE}}


def available_methods(include_none: bool = True) -> tuple[str, ...]:
    """Every method name a render accepts: built-ins, then plugins, then ``none`` (no guidance)."""
    return (*builtin_methods(), *sorted(_plugins()), *([NONE] if include_none else []))


def parse_method(spec: str | None) -> list[str]:
    """``"refocus+rca"`` -> ``["refocus", "rca"]`` (case and spaces ignored, repeats dropped);
    ``"none"`` -> ``[]``. An unknown name is a UsageError."""
    known = available_methods()
    parts = [p.strip().lower() for p in (spec or NONE).split("+") if p.strip()]
    bad = [p for p in parts if p not in known]
    if bad or not parts:
        raise UsageError(f"unknown guidance method {spec!r}; choose from {', '.join(known)} (combine with '+')")
    return [p for p in dict.fromkeys(parts) if p != NONE]


@cache
def method_class(name: str) -> type[GuidanceMethod]:
    """The class of a method name (imports its module: torch)."""
    if name in builtin_methods():
        module = importlib.import_module(f"{__name__}.{name}")
        found = [v for v in vars(module).values()
                 if isinstance(v, type) and issubclass(v, GuidanceMethod) and getattr(v, "name", None) == name]
        source = module.__name__
    elif name in _plugins():
        found, source = [_plugins()[name].load()], _plugins()[name].value
    else:
        parse_method(name)  # the one message for an unknown name
        raise UsageError(f"{name!r} is not a single guidance method")
    cls = found[0] if found else None
    if not (isinstance(cls, type) and issubclass(cls, GuidanceMethod) and getattr(cls, "name", None) == name):
        raise UsageError(f"guidance method {name!r} from {source} is not a GuidanceMethod subclass named {name!r}")
    return cls


def config_for(name: str, overrides: dict | None = None):
    """The method's config dataclass with ``overrides`` applied; an unknown field is a UsageError."""
    cls = method_class(name).config_class
    overrides = dict(overrides or {})
    known = {f.name for f in fields(cls)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise UsageError(f"unknown option(s) {', '.join(bad)} for method {name!r}; known: {', '.join(sorted(known))}")
    for k, v in overrides.items():  # JSON gives lists where the dataclass holds tuples
        if isinstance(v, list):
            overrides[k] = tuple(tuple(x) if isinstance(x, list) else x for x in v)
    _check_types(name, cls, overrides)
    try:  # the config's own checks (ranges, combinations) also become one UsageError
        return replace(cls(), **overrides)
    except (TypeError, ValueError) as e:
        raise UsageError(f"method {name!r}: {str(e).splitlines()[0]}") from None


def _check_types(name: str, cls: type, overrides: dict[str, Any]) -> None:
    """Each value has its field's type (strictly: "20" is not 20) and its numbers are finite, so a wrong
    option is one UsageError now, not a TypeError or a black image halfway through a render."""
    from pydantic import TypeAdapter, ValidationError

    hints = get_type_hints(cls)
    for key, value in overrides.items():
        hint = hints[key]
        try:
            TypeAdapter(hint).validate_python(value, strict=True)
        except ValidationError:
            kind = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise UsageError(f"option {key} of method {name!r} must be {kind}, not {value!r}") from None
        if not all(math.isfinite(x) for x in _numbers(value)):
            raise UsageError(f"option {key} of method {name!r} must be finite, not {value!r}")


def _numbers(value: Any) -> list[float]:
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _numbers(v)]
    return [value] if isinstance(value, float) else []


def check_options(options: object) -> dict[str, dict]:
    """Per-method overrides ({method: {field: value}}) checked against the methods' configs: the one
    check behind ``method_options``, the CLI's ``--method-options`` and a model folder's ``guidance.json``."""
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise UsageError('method options must map methods to objects, e.g. {"refocus": {"loss_scale": 20}}')
    names = available_methods(include_none=False)
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(unknown)} in the method options; choose from {', '.join(names)}")
    for name, fields_ in options.items():
        config_for(name, fields_)
    return options
