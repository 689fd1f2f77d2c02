"""The model specification: benchmarks, anchors, floors, and the options that change the model.

A :class:`ModelSpec` is static (hashable): compiled likelihood code is specialized on it. Its
parameters are declared block by block in :mod:`latentscale.model.params`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from latentscale.errors import InputError
from latentscale.model.covariates import COVARIATE_SETS, check_covariate_set

#: Scores are clipped into this interval before the Beta density, as in the reference analysis.
DEFAULT_CLIP = (0.001, 0.999)
#: The model's on/off terms (boolean options of :class:`ModelSpec`, all False in the plain model).
SWITCHES = ("hetero_precision", "residual", "residual_slope", "ceiling", "link_power")


def switches_of(options) -> dict[str, bool]:
    """The on/off terms (:data:`SWITCHES`) of a mapping of model options, False where absent."""
    return {name: bool(options.get(name, False)) for name in SWITCHES}


def check_power_prior(value, link_power: bool) -> float | None:
    """``power_prior`` as a float (None stays None): a positive finite SD, given only with ``link_power``."""
    if value is None:
        return None
    try:
        sd = float(value)
    except (TypeError, ValueError):
        raise InputError(f"power_prior must be a positive number (the SD of log γ), got {value!r}") from None
    if not (math.isfinite(sd) and sd > 0):
        raise InputError(f"power_prior must be a positive number (the SD of log γ), got {value!r}")
    if not link_power:
        raise InputError("power_prior penalizes the link powers: it needs link_power=True (variant 'power:SD')")
    return sd


@dataclass(frozen=True)
class ModelSpec:
    """Static description of a model.

    benchmarks, anchors, floors : the benchmark columns, the K anchors (anchor k loads only on
        skill k) and every benchmark's random-guess floor c_j.
    clip : scores are clipped into [low, high] before the Beta density (None: no clip).
    logit_clip : None (the model of the paper's text) or L > 0: the linear predictor λᵀθ + b is
        clamped to [−L, L] before the sigmoid, as the reference code that produced the paper's
        figures does (L = 4.5); below −L the mean score is pinned at c + (1 − c)·sigmoid(−L).
    covariates : the covariate set (:data:`~latentscale.model.covariates.COVARIATE_SETS`).
    family_covariates : names of data columns constant within a family (for example whether it is
        instruction-tuned) in the mean of the family effect, α_f ~ N(Γ z_f, Σ): Γ is their rows of
        B, standardized like the other covariates; default none.
    hetero_precision : the precision depends on the covariates, log φ_ij = log φ_j + γ_jᵀ x_i (the
        authors' later code); default False (φ_j per benchmark).
    residual : a family × benchmark residual effect u_fj ~ N(0, τ_j²) in the linear predictor
        (benchmark-specific strengths of a family that the K skills do not carry); default False.
    residual_slope : with ``residual``, a family × benchmark random slope in the first (size)
        covariate as well, η_ij += v_fj·z_i with v_fj ~ N(0, ω_j²) and z_i the standardized first
        covariate (log N, or log C for ``flops``): families differ in how size buys each benchmark,
        so predictions far above a family's models are less certain; default False.
    ceiling : a fitted ceiling per benchmark, μ = c + (1 − c)·κ_j·sigmoid(η) with κ_j ∈ (0, 1) (a
        benchmark whose scores saturate below 1); default False (κ = 1).
    link_power : a fitted power of the link per benchmark, μ = c + (1 − c)·κ_j·sigmoid(η + log γ_j)^γ_j with
        γ_j > 0 (an asymmetric sigmoid: γ > 1 a slow start above the floor and a steep rise, γ < 1 the
        reverse); default False (γ = 1).
    power_prior : with ``link_power``, the SD s of a normal penalty on the link powers' logs,
        log γ_j ~ N(0, s²) (penalized maximum likelihood: ℓ(θ) − Σ_j (log γ_j)² / (2s²) is maximized, so a
        shape the data say little about stays near the logistic instead of running to its bounds);
        default None (no penalty).
    blocks : names of the parameter blocks (default: those the options above call for); a block
        must be registered in :data:`latentscale.model.params.BLOCKS`.
    """

    benchmarks: tuple[str, ...]
    anchors: tuple[str, ...]
    floors: tuple[float, ...]
    clip: tuple[float, float] | None = DEFAULT_CLIP
    logit_clip: float | None = None
    covariates: str = "paper"
    family_covariates: tuple[str, ...] = ()
    hetero_precision: bool = False
    residual: bool = False
    ceiling: bool = False
    residual_slope: bool = False
    link_power: bool = False
    power_prior: float | None = None
    blocks: tuple[str, ...] | None = None
    anchor_index: tuple[int, ...] = field(init=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "benchmarks", tuple(str(b) for b in self.benchmarks))
        object.__setattr__(self, "anchors", tuple(str(a) for a in self.anchors))
        object.__setattr__(self, "floors", tuple(float(c) for c in self.floors))
        missing = [a for a in self.anchors if a not in self.benchmarks]
        if missing:
            raise InputError(f"anchor benchmark(s) {missing} are not among the benchmarks {list(self.benchmarks)}")
        if len(set(self.anchors)) != len(self.anchors):
            raise InputError(f"anchors must be distinct, got {list(self.anchors)}")
        if not 1 <= len(self.anchors) <= len(self.benchmarks):
            raise InputError(f"need 1 <= K <= number of benchmarks ({len(self.benchmarks)}), got K = {len(self.anchors)}")
        if len(self.floors) != len(self.benchmarks):
            raise InputError(f"{len(self.benchmarks)} benchmarks need as many floors, got {len(self.floors)}")
        if self.clip is not None:  # any pair (a list from JSON, say) becomes a hashable tuple
            object.__setattr__(self, "clip", tuple(float(c) for c in self.clip))
            if len(self.clip) != 2 or not (0.0 < self.clip[0] < self.clip[1] < 1.0):
                raise InputError(f"clip must satisfy 0 < low < high < 1, got {self.clip}")
        if self.logit_clip is not None:
            object.__setattr__(self, "logit_clip", float(self.logit_clip))
            if not self.logit_clip > 0:
                raise InputError(f"logit_clip must be a positive number (the reference code uses 4.5), got {self.logit_clip}")
        check_covariate_set(self.covariates)
        object.__setattr__(self, "family_covariates", tuple(str(c) for c in self.family_covariates))
        taken = set(COVARIATE_SETS[self.covariates])
        if len(set(self.family_covariates)) != len(self.family_covariates) or taken & set(self.family_covariates):
            raise InputError(f"family covariates must be distinct and differ from {sorted(taken)}, got "
                             f"{list(self.family_covariates)}")
        for name in SWITCHES:
            object.__setattr__(self, name, bool(getattr(self, name)))
        if self.residual_slope and not self.residual:
            raise InputError("residual_slope needs residual=True (the slope is nested with the residual; variant "
                             "'residual+slope')")
        if self.power_prior is not None:
            object.__setattr__(self, "power_prior", check_power_prior(self.power_prior, self.link_power))
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "anchor_index", tuple(self.benchmarks.index(a) for a in self.anchors))

    @property
    def K(self) -> int:
        return len(self.anchors)

    @property
    def J(self) -> int:
        return len(self.benchmarks)

    @property
    def p(self) -> int:
        return len(self.covariate_names)

    @property
    def covariate_names(self) -> tuple[str, ...]:
        return COVARIATE_SETS[self.covariates] + self.family_covariates

    @property
    def switches(self) -> dict[str, bool]:
        """The on/off terms (:data:`SWITCHES`) by name."""
        return {name: getattr(self, name) for name in SWITCHES}

    @property
    def skills(self) -> tuple[str, ...]:
        """Skills are named by their anchors."""
        return self.anchors

    @property
    def n_effects(self) -> int:
        """Random effects per family: the K skills, the J residuals with ``residual``, then the J
        slopes with ``residual_slope``."""
        return self.K + self.J * self.residual_terms

    @property
    def residual_terms(self) -> int:
        """Random effects per (family, benchmark) cell: 0, 1 (u) or 2 (u and the slope v)."""
        return (1 + int(self.residual_slope)) if self.residual else 0

    @property
    def free_index(self) -> tuple[int, ...]:
        """Benchmarks whose loadings are all free (the non-anchors)."""
        return tuple(j for j in range(self.J) if j not in self.anchor_index)

    @property
    def block_names(self) -> tuple[str, ...]:
        from latentscale.model.params import default_block_names

        return self.blocks if self.blocks is not None else default_block_names(self)

    @property
    def n_params(self) -> int:
        from latentscale.model.params import layout

        return layout(self).size

    @property
    def structure(self) -> "ModelSpec":
        """The spec with everything that does not change the structure of the computation
        replaced by placeholders (benchmark names, floors, the clip of the scores): the key of
        compiled code, so data sets of the same shape share it. Floors travel as data."""
        canon = self.__dict__.get("_structure")
        if canon is None:
            names = tuple(f"b{j + 1}" for j in range(self.J))
            canon = ModelSpec(benchmarks=names, anchors=tuple(names[j] for j in self.anchor_index),
                              floors=(0.0,) * self.J, clip=None, logit_clip=self.logit_clip,
                              covariates=self.covariates,
                              family_covariates=tuple(f"z{i + 1}" for i in range(len(self.family_covariates))),
                              blocks=self.block_names, **self.switches)
            object.__setattr__(self, "_structure", canon)
        return canon

    def replace(self, **changes) -> "ModelSpec":
        return replace(self, **changes)

    def describe(self) -> str:
        """One line of the options that change the model (for summaries)."""
        parts = [f"covariates {self.covariates} ({', '.join(self.covariate_names)})",
                 "scores clipped to [" + ", ".join(f"{c:g}" for c in self.clip) + "]" if self.clip else "no clip of scores"]
        if self.family_covariates:
            parts.insert(1, "family effects' mean depends on " + ", ".join(self.family_covariates)
                         + " (α_f ~ N(Γ z_f, Σ))")
        parts.append(f"logit clamped to ±{self.logit_clip:g} (the reference code's)" if self.logit_clip
                     else "no logit clamp")
        if self.hetero_precision:
            parts.append("precision depends on the covariates (log φ_ij = log φ_j + γ_jᵀ x_i)")
        if self.residual:
            parts.append("family × benchmark residual u_fj ~ N(0, τ_j²)")
        if self.residual_slope:
            parts.append(f"family × benchmark random slope in {self.covariate_names[0]}, v_fj ~ N(0, ω_j²)")
        if self.ceiling:
            parts.append("a fitted ceiling per benchmark (μ = c + (1 − c)·κ·sigmoid(η))")
        if self.link_power:
            parts.append("a fitted link power per benchmark (μ = c + (1 − c)·κ·sigmoid(η + log γ)^γ)"
                         + (f", penalized: log γ ~ N(0, {self.power_prior:g}²)" if self.power_prior else ""))
        from latentscale.model.params import default_block_names

        extra = [b for b in self.block_names if b not in default_block_names(self)]
        if extra:
            parts.append("extra blocks: " + ", ".join(extra))
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {
            "benchmarks": list(self.benchmarks),
            "anchors": list(self.anchors),
            "floors": list(self.floors),
            "clip": None if self.clip is None else list(self.clip),
            "logit_clip": self.logit_clip,
            "covariates": self.covariates,
            "family_covariates": list(self.family_covariates),
            **self.switches,
            "power_prior": self.power_prior,
            "blocks": None if self.blocks is None else list(self.blocks),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(
            benchmarks=tuple(d["benchmarks"]),
            anchors=tuple(d["anchors"]),
            floors=tuple(float(c) for c in d["floors"]),
            clip=None if d.get("clip") is None else tuple(d["clip"]),
            logit_clip=d.get("logit_clip"),
            covariates=d.get("covariates", "paper"),
            family_covariates=tuple(d.get("family_covariates", ())),
            **switches_of(d),
            power_prior=d.get("power_prior"),
            blocks=None if d.get("blocks") is None else tuple(d["blocks"]),
        )
