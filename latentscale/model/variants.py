"""Named model variants: combinations of the model options, for comparing models by name.

A variant is a ``+``-joined list of terms, each setting model options of
:class:`~latentscale.LatentScalingModel`:

- ``plain``: the model of the paper's text (no option changed);
- ``hetero``: heteroscedastic precision, log φ_ij = log φ_j + γ_jᵀ x_i (``hetero_precision=True``);
- ``residual``: a family × benchmark residual effect u_fj ~ N(0, τ_j²) (``residual=True``);
- ``slope``: with the residual, a family × benchmark random slope in the first (size) covariate,
  v_fj ~ N(0, ω_j²) (``residual=True, residual_slope=True``; ``slope`` implies ``residual``);
- ``power``: a fitted power of the link per benchmark, μ = c + (1 − c)·κ_j·sigmoid(η + log γ_j)^γ_j
  (``link_power=True``); ``power:S`` the same with a normal penalty of SD S on each log γ_j
  (``power_prior=S``, penalized maximum likelihood), e.g. ``power:1``;
- ``ceiling``: a fitted ceiling per benchmark, μ = c + (1 − c)·κ_j·sigmoid(η) (``ceiling=True``);
- ``paper``, ``size-tokens``, ``flops``: the covariate set (``covariates=...``);
- ``clamp``: the reference code's logit clamp at ±4.5 (``logit_clip=4.5``);
- ``family:COLUMN``: a family covariate in the mean of the family effect, α_f ~ N(Γ z_f, Σ)
  (``family_covariates=(COLUMN,)``; repeat the term for several), e.g. ``family:Instruct``.

``hetero+size-tokens`` is heteroscedastic precision with the covariates (log N, log D). Terms that set
the same option twice are an error. :func:`variant_name` gives the canonical name of a set of options.
"""

from __future__ import annotations

from latentscale.errors import InputError
from latentscale.model.covariates import COVARIATE_SETS
from latentscale.model.spec import SWITCHES, check_power_prior, switches_of

#: Each term and the model options it sets.
TERMS: dict[str, dict] = {
    "plain": {},
    "hetero": {"hetero_precision": True},
    "residual": {"residual": True},
    "slope": {"residual": True, "residual_slope": True},
    "ceiling": {"ceiling": True},
    "power": {"link_power": True},
    "clamp": {"logit_clip": 4.5},
    **{name: {"covariates": name} for name in COVARIATE_SETS},
}

#: The variant used for prediction by the evaluation (``latent-auto`` chooses K and the family attributes
#: by AIC on the core rows, within this variant): a family × benchmark residual, a fitted ceiling and a
#: fitted link power per benchmark with a N(0, 1) penalty on each log γ. How it was chosen is said in
#: docs/evaluation.md.
PREDICTION_VARIANT = "residual+ceiling+power:1"

#: The options a variant can set, with their values in the plain model.
DEFAULTS: dict = {**{name: False for name in SWITCHES}, "power_prior": None, "logit_clip": None,
                 "covariates": "paper", "family_covariates": ()}


def parse_variant(name: str) -> dict:
    """The model options of a variant name (module docstring)."""
    terms = [t.strip() for t in str(name).split("+")]
    options: dict = {}
    for t in terms:
        if t.startswith("family:"):
            column = t[len("family:"):].strip()
            have = options.setdefault("family_covariates", ())
            if not column or column in have:
                raise InputError(f"variant {name!r}: give each family covariate once as family:COLUMN, got {t!r}")
            options["family_covariates"] = have + (column,)
            continue
        if t.startswith("power:"):
            try:
                value = check_power_prior(t[len("power:"):].strip(), link_power=True)
            except InputError:
                raise InputError(f"variant {name!r}: power:S takes the penalty's SD, a positive number (e.g. power:1), "
                                 f"got {t!r}") from None
            if options.get("power_prior") is not None:
                raise InputError(f"variant {name!r} sets power_prior twice")
            options["power_prior"] = value
            t = "power"
        if t not in TERMS:
            raise InputError(f"unknown variant term {t!r} in {name!r}; terms: {', '.join(TERMS)}, family:COLUMN "
                             "(join them with +)")
        for key, value in TERMS[t].items():
            if key in options and options[key] != value:
                raise InputError(f"variant {name!r} sets {key} twice")
            options[key] = value
    return options


def variant_name(options: dict) -> str:
    """The canonical name of the variant that ``options`` describe (``plain`` when none differs)."""
    terms = []
    if options.get("residual"):
        terms.append("residual")
    if options.get("residual_slope"):
        terms.append("slope")
    if options.get("ceiling"):
        terms.append("ceiling")
    if options.get("link_power"):
        prior = options.get("power_prior")
        terms.append("power" if prior is None else f"power:{float(prior):g}")
    if options.get("hetero_precision"):
        terms.append("hetero")
    if options.get("logit_clip") is not None:
        if float(options["logit_clip"]) != 4.5:
            terms.append(f"clamp{float(options['logit_clip']):g}")
        else:
            terms.append("clamp")
    cov = options.get("covariates", "paper")
    if cov != "paper":
        terms.append(cov)
    terms += [f"family:{c}" for c in options.get("family_covariates", ())]
    return "+".join(terms) or "plain"


def extra_blocks(options: dict) -> tuple[str, ...]:
    """The parameter blocks beyond the core ones that a model with these options has."""
    from latentscale.model.params import CORE_BLOCKS, default_block_names
    from latentscale.model.spec import ModelSpec

    spec = ModelSpec(benchmarks=("b1",), anchors=("b1",), floors=(0.0,),
                     **switches_of(options))
    return tuple(b for b in default_block_names(spec) if b not in CORE_BLOCKS)
