"""Units of CAR-T kinetic assays: one registry of spellings, kinds and conversion factors.

CAR-T levels are reported in a handful of units of two kinds:

* **transgene copies per mass of genomic DNA** (qPCR, ddPCR on DNA): ``copies/ug`` (canonical),
  ``copies/ng``, ``copies/100 ng``, ``copies/mg``;
* **cells per volume of blood** (flow cytometry): ``cells/uL`` (canonical), ``cells/mL``,
  ``cells/L``, ``10^9 cells/L`` (``x10^9/L``, ``G/L``), ``10^3 cells/uL`` (``K/uL``),
  ``cells/mm3``;
* transgene **copies per volume** (ddPCR on whole blood or plasma): ``copies/uL`` (canonical),
  ``copies/mL``.

Spellings are normalised before lookup: ``ug``, ``µg``, ``μg``, ``mcg`` are micrograms; ``uL``,
``µL``, ``mcL``, ``ul`` are microlitres; ``x``, ``*``, ``×``, ``E``, ``e`` write powers of ten;
trailing descriptions such as ``genomic DNA`` or ``gDNA`` are ignored. Two units convert only
within one kind: ``copies/ng`` to ``copies/ug`` multiplies by 1000, but ``cells/uL`` never
becomes ``copies/ug`` (that needs a calibration no file carries).

Why an explicit table and not pint: the set is small and closed, the spellings labs write
(``copies/100 ng``, ``x10^9/L``, ``mcL``) need normalising before any parser sees them, and a
table is auditable line by line and costs nothing at import. The test suite checks every factor
here against pint, an independent implementation of the same arithmetic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cartkinetics.errors import CartKineticsError


@dataclass(frozen=True)
class UnitInfo:
    """A known unit: its canonical spelling, kind and factor to the kind's canonical unit.

    ``value_in_canonical = value * factor``.
    """

    name: str
    kind: str
    factor: float

    @property
    def canonical(self) -> str:
        """The canonical unit of this unit's kind."""
        return CANONICAL[self.kind]


#: kind -> canonical unit
CANONICAL: dict[str, str] = {
    "copies per DNA mass": "copies/ug",
    "cells per volume": "cells/uL",
    "copies per volume": "copies/uL",
}

#: canonical spelling -> (kind, factor to the canonical unit of the kind)
_TABLE: dict[str, tuple[str, float]] = {
    "copies/ug": ("copies per DNA mass", 1.0),
    "copies/ng": ("copies per DNA mass", 1e3),
    "copies/100 ng": ("copies per DNA mass", 10.0),
    "copies/mg": ("copies per DNA mass", 1e-3),
    "cells/uL": ("cells per volume", 1.0),
    "cells/mL": ("cells per volume", 1e-3),
    "cells/L": ("cells per volume", 1e-6),
    "10^3 cells/uL": ("cells per volume", 1e3),
    "10^6 cells/L": ("cells per volume", 1.0),
    "10^9 cells/L": ("cells per volume", 1e3),
    "cells/mm3": ("cells per volume", 1.0),
    "copies/uL": ("copies per volume", 1.0),
    "copies/mL": ("copies per volume", 1e-3),
}

#: assay -> kind of its levels (assays declared by the user have no kind)
ASSAY_KINDS: dict[str, str] = {"qpcr": "copies per DNA mass", "flow": "cells per volume"}

_MICRO = ("µ", "μ", "mc", "u")  # micro written as a symbol, 'mc' (US pharmacy) or 'u'


def _normalise(text: str) -> str:
    """Lower-level spelling of a unit: micro signs, powers of ten, descriptions removed."""
    s = str(text).strip()
    s = s.replace("μ", "µ").replace("×", "x").replace("²", "2").replace("³", "3")
    s = re.sub(r"\s+", " ", s)
    # drop a trailing description: "copies/ug genomic DNA (qPCR)", "copies/ug gDNA"
    s = re.sub(r"\s*\(.*\)\s*$", "", s)
    s = re.sub(r"\s+(of\s+)?(genomic\s+dna|gdna|dna|blood|whole blood|pb)\b.*$", "", s,
               flags=re.IGNORECASE)
    s = s.replace(" / ", "/").replace("/ ", "/").replace(" /", "/")
    s = s.lower()
    s = re.sub(r"\bcopy\b", "copies", s)
    s = re.sub(r"\bcell\b", "cells", s)
    # powers of ten: x10^9, x10e9, 10e9, 1e9, 10**9, 10^9 -> 10^9
    s = re.sub(r"(?:^|(?<=\s))x\s*10", "10", s)
    s = re.sub(r"\b10\s*(?:\^|\*\*|e)\s*([0-9]+)", r"10^\1", s)
    s = re.sub(r"\b1e([0-9]+)", r"10^\1", s)
    s = s.replace("g/l", "10^9/l") if re.fullmatch(r"g/l", s) else s
    s = re.sub(r"^k/(µl|ul|mcl)$", r"10^3/\1", s)
    for m in _MICRO:
        s = re.sub(rf"(?<![a-z]){re.escape(m)}(g|l)\b", r"u\1", s)
    s = s.replace("mm^3", "mm3").replace("cu mm", "mm3")
    return s


def _canonical_spelling(s: str) -> str | None:
    """Map a normalised spelling to a key of ``_TABLE`` (or None)."""
    s = s.replace(" ", "")
    m = re.fullmatch(r"(10\^[0-9]+)?(cells|copies)?/(100ng|ug|ng|mg|ul|ml|l|mm3)", s)
    if m is None:
        return None
    power, what, per = m.group(1), m.group(2), m.group(3)
    if what is None:
        # "/uL", "x10^9/L": a count of cells (flow) is the only thing written without a noun
        if per in ("100ng", "ug", "ng", "mg"):
            return None
        what = "cells"
    per_name = {"100ng": "100 ng", "ug": "ug", "ng": "ng", "mg": "mg", "ul": "uL", "ml": "mL",
                "l": "L", "mm3": "mm3"}[per]
    if power is None:
        key = f"{what}/{per_name}"
        return key if key in _TABLE else None
    exp = int(power[3:])
    if what != "cells":
        return None
    # a power of ten in front: express it against a table entry of the same denominator
    base = f"cells/{per_name}"
    if base not in _TABLE:
        return None
    named = f"{power} cells/{per_name}"
    if named in _TABLE:
        return named
    # e.g. 10^6 cells/mL: not a table key; handled by lookup() through the factor
    return f"{exp}|{base}"


def lookup(unit: str) -> UnitInfo | None:
    """The :class:`UnitInfo` of a spelling, or None when the unit is not a known assay unit.

    >>> lookup("copies/µg genomic DNA").name
    'copies/ug'
    >>> lookup("x10^9/L").factor
    1000.0
    """
    if unit is None:
        return None
    key = _canonical_spelling(_normalise(unit))
    if key is None:
        return None
    if "|" in key:
        exp_text, base = key.split("|")
        kind, f = _TABLE[base]
        return UnitInfo(f"10^{exp_text} {base}", kind, f * 10.0 ** int(exp_text))
    kind, f = _TABLE[key]
    return UnitInfo(key, kind, f)


def canonical_unit(unit: str) -> str:
    """Canonical spelling of a known unit (``"copies/µg"`` -> ``"copies/ug"``); the text as
    written (stripped) when the unit is not in the registry."""
    info = lookup(unit)
    return info.name if info is not None else str(unit).strip()


def same_unit(a: str, b: str) -> bool:
    """True when two spellings name the same unit (``copies/µg`` and ``copies/ug gDNA``)."""
    ia, ib = lookup(a), lookup(b)
    if ia is None or ib is None:
        return str(a).strip() == str(b).strip()
    return ia.kind == ib.kind and math.isclose(ia.factor, ib.factor, rel_tol=1e-12)


def conversion_factor(from_unit: str, to_unit: str) -> float:
    """Multiply a level in ``from_unit`` by this to get it in ``to_unit``.

    Raises
    ------
    CartKineticsError
        When either unit is unknown or the two are of different kinds.
    """
    a, b = lookup(from_unit), lookup(to_unit)
    for text, info in ((from_unit, a), (to_unit, b)):
        if info is None:
            raise CartKineticsError(
                f"unit {text!r} is not a known assay unit; known: {', '.join(known_units())}"
            )
    assert a is not None and b is not None
    if a.kind != b.kind:
        raise CartKineticsError(
            f"cannot convert {from_unit!r} ({a.kind}) to {to_unit!r} ({b.kind}): different "
            "kinds of measurement"
        )
    return a.factor / b.factor


def known_units() -> list[str]:
    """Canonical spellings of every unit in the registry."""
    return list(_TABLE)


def assay_kind(assay: str) -> str | None:
    """Kind of the levels of a built-in assay (None for a user-declared assay)."""
    return ASSAY_KINDS.get(str(assay).lower())


def area_unit(unit: str | None) -> str | None:
    """Unit of an area under a curve in ``unit`` over days: ``copies/ug`` -> ``copies*day/ug``,
    ``cells/uL`` -> ``cells*day/uL`` (``unit*day`` when there is no ``/``; None without a
    unit). The one spelling of area units in tables, JSON and reports."""
    if unit is None or unit == "" or (isinstance(unit, float) and math.isnan(unit)):
        return None
    unit = str(unit)
    if "/" in unit:
        num, den = unit.split("/", 1)
        return f"{num.strip()}*day/{den.strip()}"
    return f"{unit}*day"


def check_model_unit(
    data_unit: str,
    model_unit: str,
    *,
    what: str,
    fix: str,
) -> None:
    """Refuse to confront data in ``data_unit`` with a model quantity in ``model_unit``.

    Parameters
    ----------
    data_unit, model_unit : str
        Units as written (spellings are normalised before comparing).
    what : str
        What meets the data, e.g. ``"the Stein 2019 population prior"``.
    fix : str
        What the user can do instead (named in the message).

    Raises
    ------
    CartKineticsError
        When the units differ.
    """
    if not data_unit or not model_unit or same_unit(data_unit, model_unit):
        return
    raise CartKineticsError(
        f"the data are in {canonical_unit(data_unit)} but {what} is in "
        f"{canonical_unit(model_unit)}: {fix}"
    )


def level_parameters(model: object) -> list[str]:
    """Parameters of ``model`` whose unit is an assay level unit (e.g. Stein's ``cmax`` in
    copies/ug): the ones whose published values only mean something in that unit."""
    out = []
    for p in getattr(model, "parameters", []):
        if lookup(getattr(p, "unit", "")) is not None:
            out.append(p.name)
    return out


def check_prior_units(
    model: object, data_unit: str, *, stated: Iterable[str] = (), what: str, fix: str
) -> None:
    """Refuse a prior built from a model's published values in another unit than the data's.

    Parameters
    ----------
    model : Model
        Its level parameters (see :func:`level_parameters`) carry the published unit.
    data_unit : str
        Unit of the data being fitted.
    stated : iterable of str
        Parameters whose prior the user stated (in the data's unit): not checked.
    what, fix : str
        What the prior is, and what to do instead (named in the message).

    Raises
    ------
    CartKineticsError
        Naming both units, the parameters and the remedy.
    """
    if not getattr(model, "bsv", None):
        # only a published population (typical values with between-subject variability) is
        # a prior on the data's scale; models without one (Liu 2022's units are the model's
        # own) are centred on values the user is expected to restate
        return
    stated = set(stated)
    name = getattr(model, "name", "the model")
    for pname in level_parameters(model):
        if pname in stated:
            continue
        unit = next(p.unit for p in model.parameters if p.name == pname)  # type: ignore[attr-defined]
        if data_unit and not same_unit(unit, data_unit):
            raise CartKineticsError(
                f"the data are in {canonical_unit(data_unit)} but {what} of {name} is in "
                f"{canonical_unit(unit)} ({pname} = "
                f"{next(p.value for p in model.parameters if p.name == pname):g} "  # type: ignore[attr-defined]
                f"{canonical_unit(unit)}): {fix}"
            )
