"""Response endpoints: rates with exact (Clopper-Pearson) 95% confidence intervals."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cartkinetics.endpoints.cohort import RESPONSE_CODES, Cohort
from cartkinetics.errors import CartKineticsError

DEFAULT_ORR: tuple[str, ...] = ("CR", "CRi", "PR")
"""Responses counted in the overall response rate unless the caller says otherwise."""

CI_METHOD = "Clopper-Pearson exact 95% CI (scipy.stats.binomtest)"


@dataclass(frozen=True)
class Rate:
    """A proportion k/n with its confidence interval.

    Attributes
    ----------
    name : str
        Endpoint key (``orr``, ``cr``, ``mrd_negative_cr``, ``pet_cmr``).
    label : str
        Human-readable definition, e.g. ``"ORR (CR + CRi + PR)"``.
    k, n : int
        Responders and patients in the denominator.
    rate : float
        k / n (NaN when n = 0).
    ci_low, ci_high : float
        Confidence limits of the rate (0-1 scale).
    method : str
        How the interval was computed.
    """

    name: str
    label: str
    k: int
    n: int
    rate: float
    ci_low: float
    ci_high: float
    method: str = CI_METHOD

    def to_dict(self) -> dict:
        """The --json form: ``k, n, rate, ci_low, ci_high, method``."""
        return {
            "k": self.k,
            "n": self.n,
            "rate": None if np.isnan(self.rate) else self.rate,
            "ci_low": None if np.isnan(self.ci_low) else self.ci_low,
            "ci_high": None if np.isnan(self.ci_high) else self.ci_high,
            "method": self.method,
        }


def proportion(
    k: int, n: int, *, name: str = "rate", label: str = "", confidence: float = 0.95
) -> Rate:
    """k/n with the Clopper-Pearson exact interval.

    Parameters
    ----------
    k, n : int
        Successes and trials (0 <= k <= n).
    name, label : str
        Key and description carried into the result.
    confidence : float
        Confidence level (0.95 gives a 95% interval).

    Returns
    -------
    Rate
        NaN rate and limits when n = 0.
    """
    from scipy.stats import binomtest

    k, n = int(k), int(n)
    if n == 0:
        return Rate(name, label or name, 0, 0, np.nan, np.nan, np.nan)
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    method = CI_METHOD if confidence == 0.95 else CI_METHOD.replace("95%", f"{confidence:.0%}")
    return Rate(name, label or name, k, n, k / n, float(ci.low), float(ci.high), method)


def normalise_response_codes(codes: Iterable[str]) -> tuple[str, ...]:
    """Canonical response codes for an ORR definition (error on unknown codes)."""
    out = []
    for code in codes:
        key = str(code).strip().lower()
        if key not in RESPONSE_CODES or key == "ne":
            raise CartKineticsError(
                f"ORR definition names unknown response {code!r}; use CR, CRi, PR, SD, PD, NR"
            )
        out.append(RESPONSE_CODES[key])
    if not out:
        raise CartKineticsError("ORR definition is empty; give at least one response code")
    return tuple(dict.fromkeys(out))


def response_flags(cohort: Cohort, *, orr: Iterable[str] = DEFAULT_ORR) -> pd.DataFrame:
    """Per-patient response flags (the definitions behind the rates).

    Parameters
    ----------
    cohort : Cohort
        Validated cohort with a ``best_response`` column.
    orr : iterable of str
        Response codes counted as responses (default CR, CRi, PR).

    Returns
    -------
    DataFrame
        Index ``patient``; boolean columns ``orr`` (best response in ``orr``; NE counts as
        no response), ``cr`` (CR or CRi) and, with an ``mrd_negative`` column,
        ``mrd_negative_cr`` (CR/CRi and MRD-negative; unknown MRD status is not negative).
    """
    codes = normalise_response_codes(orr)
    table = cohort.table
    if not cohort.has("best_response"):
        raise CartKineticsError("no 'best_response' column", source=cohort.source)
    resp = table["best_response"].astype(str)
    out = pd.DataFrame(index=pd.Index(table["patient"].astype(str), name="patient"))
    out["orr"] = resp.isin(codes).to_numpy()
    is_cr = resp.isin(["CR", "CRi"]).to_numpy()
    out["cr"] = is_cr
    if cohort.has("mrd_negative"):
        # unknown MRD status (NA) is not counted as MRD-negative
        out["mrd_negative_cr"] = is_cr & table["mrd_negative"].fillna(False).astype(bool).to_numpy()
    return out


def response_endpoints(
    cohort: Cohort, *, orr: Iterable[str] = DEFAULT_ORR
) -> tuple[dict[str, Rate], list[dict]]:
    """Overall response, complete remission, MRD-negative CR and PET-CT CMR rates.

    Parameters
    ----------
    cohort : Cohort
        Validated cohort.
    orr : iterable of str
        Response codes counted as responses (default CR, CRi, PR).

    Returns
    -------
    rates : dict
        ``orr``, ``cr`` (CR + CRi), ``mrd_negative_cr`` (CR/CRi with ``mrd_negative``),
        ``pet_cmr`` (complete metabolic remission among extramedullary-only patients);
        each a :class:`Rate` over all patients (NE counted as non-response) except
        ``pet_cmr`` whose denominator is the extramedullary-only patients.
    omitted : list of dict
        ``{"endpoint", "reason"}`` for each rate that could not be computed.
    """
    codes = normalise_response_codes(orr)
    table = cohort.table
    rates: dict[str, Rate] = {}
    omitted: list[dict] = []
    if cohort.has("best_response"):
        flags = response_flags(cohort, orr=codes)
        n = len(table)
        rates["orr"] = proportion(
            int(flags["orr"].sum()), n, name="orr", label=f"ORR ({' + '.join(codes)})"
        )
        rates["cr"] = proportion(int(flags["cr"].sum()), n, name="cr", label="CR/CRi")
        if "mrd_negative_cr" in flags:
            rates["mrd_negative_cr"] = proportion(
                int(flags["mrd_negative_cr"].sum()), n, name="mrd_negative_cr",
                label="MRD-negative CR/CRi"
            )
        else:
            omitted.append({"endpoint": "mrd_negative_cr", "reason": "no 'mrd_negative' column"})
    else:
        for name in ("orr", "cr", "mrd_negative_cr"):
            omitted.append({"endpoint": name, "reason": "no 'best_response' column"})

    missing = cohort.missing("extramedullary_only", "pet_cmr")
    if missing:
        omitted.append(
            {"endpoint": "pet_cmr", "reason": f"no {' or '.join(repr(m) for m in missing)} column"}
        )
    else:
        emd = table["extramedullary_only"].fillna(False).astype(bool)
        if not emd.any():
            omitted.append(
                {"endpoint": "pet_cmr", "reason": "no patient with extramedullary-only disease"}
            )
        else:
            pet = table.loc[emd, "pet_cmr"]
            if pet.isna().any():
                row = int(table.loc[emd & table["pet_cmr"].isna(), "source_row"].iloc[0])
                raise CartKineticsError(
                    "PET-CT result missing for an extramedullary-only patient",
                    source=cohort.source,
                    row=row,
                    column=cohort.columns["pet_cmr"],
                )
            rates["pet_cmr"] = proportion(
                int(pet.astype(bool).sum()),
                int(emd.sum()),
                name="pet_cmr",
                label="Complete metabolic remission (PET-CT), extramedullary-only patients",
            )
    return rates, omitted


def response_table(rates: dict[str, Rate]) -> pd.DataFrame:
    """Tidy table of rates: one row per endpoint (rate and limits as fractions)."""
    rows = [
        {
            "endpoint": r.name,
            "definition": r.label,
            "k": r.k,
            "n": r.n,
            "rate": r.rate,
            "ci_low": r.ci_low,
            "ci_high": r.ci_high,
            "method": r.method,
        }
        for r in rates.values()
    ]
    return pd.DataFrame(
        rows, columns=["endpoint", "definition", "k", "n", "rate", "ci_low", "ci_high", "method"]
    )


def response_counts(cohort: Cohort) -> pd.DataFrame:
    """Best response distribution: code, count, percent of all patients."""
    order = ["CR", "CRi", "PR", "SD", "PD", "NR", "NE"]
    resp = cohort.table["best_response"].astype(str)
    counts = resp.value_counts().reindex(order, fill_value=0)
    n = len(resp)
    return pd.DataFrame(
        {
            "best_response": order,
            "n": counts.to_numpy(int),
            "percent": 100 * counts.to_numpy(float) / n if n else np.nan,
        }
    )
