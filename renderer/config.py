"""Hyperparameters: one dataclass per guidance method, with the published defaults.

Values come from shared/spec/guidance.md (the methods' papers and official
code). Where the published code ran on another base model the value is
rescaled for plain Stable Diffusion and the comment says why; the README
section of the renderer records the same choices. Schedules are written in
units of a 50-step sampler and rescaled to other step counts by the guider.

Override per render with ``method_options={"refocus": {"loss_scale": 20}}``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from plan_and_render.errors import UsageError


@dataclass(frozen=True)
class RefocusConfig:
    """Attention Refocusing (Phung et al.): cross- (CAR) and self-attention (SAR) losses."""

    # The official code runs on GLIGEN with s = 4 (steps 0-4), 3 (5-19), 1 (20+); its authors advise
    # about 10x that on plain SD, whose attention is not pulled to boxes by grounding adapters.
    # ``loss_scale`` is the steps-0-4 value; the later values keep the published ratios (3/4, 1/4).
    loss_scale: float = 40.0
    loss_threshold: float = 0.1  # steps 0-9 iterate while loss (at the published s) > this ...
    min_in_threshold: float = 0.2  # ... and the weakest object's in-box maximum < this
    late_steps: tuple[int, ...] = (10, 15, 20, 25, 30, 35)  # up to 2 more iterations at these steps
    self_attention: bool = True  # add SAR to CAR
    temperature: float = 100.0  # softmax(temperature * A) over content tokens (A&E convention)
    smooth: bool = True  # 3x3 Gaussian, sigma 0.5


@dataclass(frozen=True)
class ZestConfig:
    """ZestGuide (Couairon et al.): BCE between summed token maps and masks, no extra forward."""

    tau: float = 0.5  # guide the first half of the steps
    eta: float = 0.3  # x_{t-1} -= eta * sqrt(1 - abar_t) * grad / max|grad|
    gain: float = 10.0  # A = gain * S_hat before the BCE
    resolution: int = 32  # maps are resized to this square grid
    gate: float = 0.01  # pixels where prediction and target are both <= gate are left out (raw maps)
    gate_normalised: float = 0.1  # the same for the max-normalised maps


@dataclass(frozen=True)
class ExciteConfig:
    """Attend-and-Excite (Chefer et al.) and the single-step refinement of Grimal et al. (2025)."""

    per_step: bool = True  # A&E: one gradient step on L_CN at every step below max_step
    scale_factor: float = 20.0  # alpha_i = scale_factor * sqrt(linspace(1, 0.5, 50)[i])
    max_step: int = 25
    thresholds: tuple[tuple[int, float], ...] = ((0, 0.05), (10, 0.5), (20, 0.8))  # A&E refinements
    max_refine: int = 20  # at those steps iterate (at most this often) until L_CN <= 1 - theta
    # Step selection (Grimal et al.): replace the threshold refinements by ONE refinement of
    # L_CN + L_IoU with Adam at a chosen step. ``refine_step`` set -> refine on; None with
    # refine=True -> the paper's step: 8 of 50 alone, 2 of 50 with per-step guidance (then 3-24).
    refine: bool = False
    refine_step: int | None = None
    refine_iters: int = 50
    refine_lr: float = 1e-2
    temperature: float = 100.0
    smooth: bool = True

    def __post_init__(self) -> None:
        if self.refine_step is not None:
            object.__setattr__(self, "refine", True)

    @property
    def selected_step(self) -> int | None:
        """The refinement step in 50-step units, or None when refinement is off."""
        if not self.refine:
            return None
        if self.refine_step is not None:
            return int(self.refine_step)
        return 2 if self.per_step else 8


@dataclass(frozen=True)
class RCAConfig:
    """Rectified cross-attention (FreestyleNet): object tokens masked to -inf outside their boxes."""

    until: float = 1.0  # fraction of the steps during which the masks are on (guidance.md: all or early)


@dataclass(frozen=True)
class BackwardConfig:
    """Backward guidance (Chen et al.): (1 - in-box share)^2, mid + up cross-attention, no re-softmax."""

    loss_scale: float = 30.0
    max_step: int = 10
    max_iter: int = 5
    loss_threshold: float = 0.2  # iterate while the unscaled loss > this
    # Chen et al. step x -= sigma_t^2 * grad on LMS-scaled latents equals x -= (1 - abar_t) * grad
    # on DDIM-scaled latents (x_ddim = sqrt(abar) x_lms), which is what the pipelines sample.
    lr_scale: float = 1.0


CONFIGS: dict[str, type] = {"refocus": RefocusConfig, "zest": ZestConfig, "excite": ExciteConfig,
                            "rca": RCAConfig, "backward": BackwardConfig}


def config_for(method: str, overrides: dict | None = None):
    """The method's dataclass with ``overrides`` applied; unknown names are a UsageError."""
    cls = CONFIGS[method]
    overrides = dict(overrides or {})
    known = {f.name for f in fields(cls)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise UsageError(f"unknown option(s) {', '.join(bad)} for method {method!r}; "
                         f"known: {', '.join(sorted(known))}")
    for k, v in overrides.items():  # JSON gives lists where the dataclass holds tuples
        if isinstance(v, list):
            overrides[k] = tuple(tuple(x) if isinstance(x, list) else x for x in v)
    return replace(cls(), **overrides)


def check_options(options: object) -> dict[str, dict]:
    """Per-method overrides ({method: {field: value}}) checked against the dataclasses: the one check
    behind ``method_options=``, the CLI's ``--method-options`` and a model folder's ``guidance.json``."""
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise UsageError('method options must map methods to objects, e.g. {"refocus": {"loss_scale": 20}}')
    unknown = sorted(set(options) - set(CONFIGS))
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(unknown)} in the method options; choose from {', '.join(CONFIGS)}")
    for method, fields_ in options.items():
        config_for(method, fields_)
    return options
