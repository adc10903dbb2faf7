"""The result-object conventions of :class:`cartkinetics.endpoints.EndpointResult`.

A short ``repr`` (one screen, whatever the cohort size), ``_repr_html_`` for notebooks,
``to_frame()`` (one numeric row per estimate) and ``plot(ax=)`` returning the Axes, as
every result of cartkinetics has. Kept apart from the report code so that the report and
the conventions can change independently; ``EndpointResult`` inherits them.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from cartkinetics.errors import CartKineticsError

FRAME_COLUMNS = ("endpoint", "quantity", "day", "estimate", "ci_low", "ci_high", "k", "n",
                 "at_risk", "events")


def _pct(x: Any) -> str:
    return "NA" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


class EndpointResultAPI:
    """``to_frame``, ``__repr__``, ``_repr_html_`` and ``plot`` of an endpoint result.

    Relies on the attributes of :class:`cartkinetics.endpoints.EndpointResult`: ``n``,
    ``rates``, ``os``, ``efs``, ``safety``, ``kinetics``, ``omitted``, ``by``,
    ``subgroups``, ``summary()`` and ``efficacy_table()``.
    """

    rates: dict[str, Any]
    os: Any
    efs: Any
    safety: dict[str, dict[str, int]]
    kinetics: dict | None
    omitted: list[dict]
    by: str | None
    subgroups: dict[str, Any]

    def to_frame(self) -> pd.DataFrame:
        """One row per estimate: response rates (fractions 0-1), then for OS and EFS the
        median (days) and the landmark survival probabilities.

        Columns ``endpoint, quantity, day, estimate, ci_low, ci_high, k, n, at_risk,
        events``; a median not reached, or a limit not reached, is NaN.
        """
        rows: list[dict[str, Any]] = []
        for key, r in self.rates.items():
            rows.append({"endpoint": key, "quantity": "rate", "estimate": r.rate,
                         "ci_low": r.ci_low, "ci_high": r.ci_high, "k": r.k, "n": r.n})
        for name in ("os", "efs"):
            ep = getattr(self, name)
            if ep is None:
                continue
            lo, hi = ep.km.median_ci
            rows.append({"endpoint": name, "quantity": "median_days", "estimate": ep.km.median,
                         "ci_low": lo, "ci_high": hi, "n": ep.km.n, "events": ep.km.n_events})
            for day, lm in ep.landmarks.items():
                rows.append({"endpoint": name, "quantity": "survival", "day": float(day),
                             "estimate": lm["estimate"], "ci_low": lm["ci_low"],
                             "ci_high": lm["ci_high"], "n": ep.km.n,
                             "at_risk": lm["at_risk"], "events": ep.km.n_events})
        frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
        for c in ("day", "estimate", "ci_low", "ci_high"):
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
        for c in ("k", "n", "at_risk", "events"):
            frame[c] = pd.array(frame[c], dtype="Int64")
        return frame

    def __repr__(self) -> str:
        parts = [f"{self.n} patients"]  # type: ignore[attr-defined]
        if "orr" in self.rates:
            r = self.rates["orr"]
            parts.append(f"ORR {r.k}/{r.n} ({_pct(r.rate)})")
        for name in ("os", "efs"):
            ep = getattr(self, name)
            if ep is not None:
                med = "not reached" if ep.km.median is None else f"{ep.km.median:g} d"
                ev = ep.km.n_events
                parts.append(f"{name.upper()} median {med} ({ev} event{'' if ev == 1 else 's'})")
        for key in ("crs", "icans"):
            dist = self.safety.get(key)
            if dist is not None:
                anyg = sum(c for g, c in dist.items() if int(g) >= 1)
                parts.append(f"{key.upper()} any grade {anyg}")
        if self.kinetics is not None:
            parts.append(f"kinetics {self.kinetics.get('n_pairs', '?')} pairs")
        if self.by is not None:
            parts.append(f"by {self.by}: {len(self.subgroups)} groups")
        if self.omitted:
            names = [o["endpoint"] for o in self.omitted]
            shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            parts.append(f"omitted: {shown}")
        return "EndpointResult(" + "; ".join(parts) + ")"

    def _repr_html_(self) -> str:
        from html import escape

        table = self.efficacy_table()  # type: ignore[attr-defined]
        text = escape(self.summary()).replace("\n", "<br>")  # type: ignore[attr-defined]
        return f"<p><b>EndpointResult</b></p><p>{text}</p>" + table.to_html(index=False)

    def plot(self, ax: Any = None, endpoint: str | None = None, **kw: Any) -> Any:
        """Kaplan-Meier curve of OS (default; EFS when there is no OS) with its CI band and
        the numbers at risk; one curve per subgroup when the result has ``by``.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        endpoint : {"os", "efs"}, optional
        **kw
            Passed to :func:`cartkinetics.endpoints.plots.plot_km` (``ci``, ``ticks``, ...).

        Returns
        -------
        matplotlib Axes
        """
        from cartkinetics.endpoints.plots import plot_km

        if endpoint is None:
            endpoint = "os" if self.os is not None else "efs"
        if endpoint not in ("os", "efs"):
            raise CartKineticsError(f"endpoint must be 'os' or 'efs', got {endpoint!r}")
        ep = getattr(self, endpoint)
        if ep is None:
            raise CartKineticsError(
                f"no {endpoint.upper()} in this result: the cohort table lacks its columns "
                "(os_days/death or efs_days/efs_event)")
        curves: Any = {"all patients": ep.km}
        if self.by is not None:
            curves = {f"{self.by}={lev}": getattr(sub, endpoint).km
                      for lev, sub in self.subgroups.items()
                      if getattr(sub, endpoint) is not None}
        label = {"os": "Overall survival", "efs": "Event-free survival"}[endpoint]
        kw.setdefault("title", label)
        kw.setdefault("ylabel", label)
        return plot_km(curves, ax=ax, **kw)
