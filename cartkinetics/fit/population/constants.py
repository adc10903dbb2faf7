"""Constants of the hierarchical fit (thresholds, defaults)."""

# diagnostics thresholds (Vehtari et al. 2021; Betancourt 2016)
RHAT_MAX = 1.01
ESS_MIN = 400.0
BFMI_MIN = 0.3

# the population part of the model: variable names of every sampled quantity
FREE_VARS = ("mu", "omega", "omega_re", "z", "phi_c", "delta", "tau", "u", "omega_iov",
             "kappa", "b", "sigma", "nu")
# random effects sampled centred by default: the parameters every CK series pins down
# (peak level, peak time, contraction rate); the others non-centred (see build_model)
DEFAULT_CENTRED = ("tmax", "cmax", "alpha")
# a model's ordered rates (Stein 2019: alpha, the fast contraction, above the patient's beta,
# the slow decline; ``Model.ordered_rates``) kept in order by a smooth penalty of this scale
# (ln units)
ORDER_ALPHA_BETA = True
ORDER_SCALE = 0.1
# seed of fit_population when none is given: a fixed default, so that the same command on the
# same machine gives the same draws; recorded in ``info["settings"]["seed"]`` and the JSON
DEFAULT_SEED = 20190505
# relative tolerance of the ODE solves (with forward sensitivities) in the likelihood of an ODE
# model (``fit_population(rtol=)``, ``--rtol``); models with a closed form are exact
ODE_RTOL = 1e-6
# NUTS target acceptance of fit_population (nutpie's own default is 0.8)
DEFAULT_TARGET_ACCEPT = 0.9
# default prior of the between-patient SDs: LogNormal(ln published SD, 0.5), i.e. 95% of
# its mass within a factor 0.38-2.7 of the published value; LogNormal(0, 1) where the model
# publishes no variability
OMEGA_SD_LOG = 0.5
OMEGA_SD_LOG_UNPUBLISHED = 1.0
# default prior of the between-patient SD of the infusion effects (tau): LogNormal with median
# 0.2 and SD 0.75 on the log scale (95% within 0.046-0.87), i.e. patients' second/first ratios
# spread by a factor ~1.2 typically, up to ~2.4. It replaced HalfNormal(0.3) (the same
# median), whose density does not vanish at tau = 0: with 7-20 pairs the data cannot rule out
# tau near 0, the posterior of ln tau then had a long left tail (a funnel with the
# non-centred u), and tau was the quantity with the lowest bulk and tail ESS of the fit
# (docs/population.md, "Why the default fit mixed slowly")
TAU_PRIOR = ("lognormal", 0.2, 0.75)
# default prior of the between-infusion (inter-occasion) SDs: HalfNormal(0.3) on the log (or
# logit) scale, i.e. occasions of one patient differing by a factor up to ~1.8 (95%); NONMEM
# and Monolix analyses of CAR-T or mAb kinetics report IOV of 0.1-0.5
IOV_PRIOR_SCALE = 0.3
