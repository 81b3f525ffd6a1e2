"""Chemical formulas as written in materials databases, turned into pymatgen objects.

SuperCon writes oxygen non-stoichiometry as a variable, e.g. ``YBa2Cu3O7-X``, ``La2CuO4+Z``,
``Y1Ba2Cu4O8+-Z``. Our rule (documented in the reports): a variable term ``±v`` (``v`` one of
X, Y, Z, D, x, y, z, d) that follows a number is dropped, i.e. the nominal stoichiometry is
used (δ → 0), and the entry is flagged ``oxygen_variable``. A variable that stands in place of
an amount (``OZ``, ``Oz-0.8``, and ``OY`` / ``OD`` at the end of a formula, where the variable
letter is also an element symbol: ``Y1Ba2Cu3OY`` is not one extra yttrium atom), a negative amount (``Ca-0.1``), an unknown element symbol or an
empty formula is malformed and raises :class:`FormulaError`; when the unknown amount is the
oxygen content at the end of the formula the error is an :class:`OxygenUnknownError` carrying
the cation part (``Y1Ba2Cu3Oz`` → ``Y1Ba2Cu3``), so a caller may supply a nominal oxygen content.

Two more rules, each raising :class:`FormulaError` with the reason:

- an amount above :data:`MAX_AMOUNT` (1000 atoms of one element per formula unit) is a typo
  (SuperCon has ``Y1Ba2Cu3O6050`` for O6.050 and ``O1013`` for O10.13) or an overflow (a long
  run of digits), never a composition; SuperCon's atomic-percent formulas (``Cd99.995Mn0.005``)
  and large formula units (``B105``, ``Ba24Si100``, ``Na24Si136``) stay well below it;
- the isotope symbols ``D`` (deuterium) and ``T`` (tritium) are rejected: pymatgen reads them as
  H, which would merge a deuteride with its hydride (PdD and PdH, D3S and H3S have different Tc)
  in models that only see elements. Such rows are skipped and counted by the loaders
  (``on_error="skip"``), never silently turned into hydrides. ``D`` after a number with a sign
  (``O7-D``) or in place of the amount of O (``OD``) is still the oxygen variable above.
"""

from __future__ import annotations

import math
import re

from pymatgen.core import Composition, Element

VARIABLE_LETTERS = "XYZDxyzd"
MAX_AMOUNT = 1000.0  # atoms of one element per formula unit; larger amounts are typos or overflows
ISOTOPE_SYMBOLS = {"D": "deuterium", "T": "tritium"}
_VARIABLE_TERM = re.compile(rf"(?<=[0-9])(\+-|-\+|\+|-)[{VARIABLE_LETTERS}]$|(?<=[0-9])(\+-|-\+|\+|-)[{VARIABLE_LETTERS}](?=[A-Z])")
_TOKEN = re.compile(r"([A-Z][a-z]?)([0-9]*\.?[0-9]*)")


class FormulaError(ValueError):
    """A formula that cannot be turned into a Composition; the message says why."""


class OxygenUnknownError(FormulaError):
    """The oxygen amount is a variable (``Oz``, ``OX``, a trailing ``OY``): content unknown.

    ``cations`` is the composition of everything before the oxygen when the variable ends the
    formula (atoms per formula unit), else ``None``.
    """

    def __init__(self, message: str, cations: Composition | None):
        super().__init__(message)
        self.cations = cations


def parse_formula(formula: str) -> tuple[Composition, bool]:
    """Parse a database formula into a :class:`~pymatgen.core.Composition`.

    Returns ``(composition, oxygen_variable)`` where ``oxygen_variable`` says a variable
    non-stoichiometry term was dropped (see module docstring). Amounts are atoms per formula unit,
    at most :data:`MAX_AMOUNT` per element. Raises :class:`FormulaError` naming the formula and the
    problem (unknown symbol, isotope ``D``/``T``, amount too large, variable in place of an amount).
    """
    if not isinstance(formula, str) or not formula.strip():
        raise FormulaError(f"empty formula {formula!r}")
    text = formula.strip()
    cleaned, n_sub = _VARIABLE_TERM.subn("", text)
    variable = n_sub > 0
    if re.search(r"[^A-Za-z0-9.]", cleaned):
        raise FormulaError(f"formula {formula!r}: unexpected character(s) {sorted(set(re.findall(r'[^A-Za-z0-9.]', cleaned)))}")
    pos = 0
    amounts: dict[str, float] = {}
    previous: tuple[str, str] | None = None
    for m in _TOKEN.finditer(cleaned):
        if m.start() != pos:
            break
        symbol, amount = m.group(1), m.group(2)
        pos = m.end()
        if (symbol in VARIABLE_LETTERS and amount == "" and m.end() == len(cleaned)
                and previous is not None and previous == ("O", "")):
            raise OxygenUnknownError(
                f"formula {formula!r}: variable {symbol!r} in place of the amount of O (content unknown)",
                _cations(amounts),
            )
        if not Element.is_valid_symbol(symbol):
            if len(symbol) == 2 and symbol[1] in VARIABLE_LETTERS and Element.is_valid_symbol(symbol[0]):
                message = f"formula {formula!r}: variable {symbol[1]!r} in place of the amount of {symbol[0]} (content unknown)"
                if symbol[0] == "O":
                    terminal = m.end() == len(cleaned)
                    raise OxygenUnknownError(message, _cations(amounts) if terminal else None)
                raise FormulaError(message)
            if symbol in VARIABLE_LETTERS and previous is not None and previous[1] == "":
                message = f"formula {formula!r}: variable {symbol!r} in place of the amount of {previous[0]} (content unknown)"
                raise (OxygenUnknownError(message, None) if previous[0] == "O" else FormulaError(message))
            raise FormulaError(f"formula {formula!r}: unknown element symbol {symbol!r}")
        if symbol in ISOTOPE_SYMBOLS:
            raise FormulaError(_isotope_message(formula, symbol, cleaned[m.end(1):m.end(1) + 1]))
        try:
            value = float(amount) if amount else 1.0
        except ValueError:
            raise FormulaError(f"formula {formula!r}: bad amount {amount!r} for {symbol}") from None
        amounts[symbol] = amounts.get(symbol, 0.0) + value
        if not math.isfinite(amounts[symbol]) or amounts[symbol] > MAX_AMOUNT:
            shown = amount if len(amount) <= 12 else f"{amount[:8]}... ({len(amount)} digits)"
            if amounts[symbol] != value:
                shown += f" ({amounts[symbol]:g} in all)"
            raise FormulaError(
                f"formula {formula[:40]!r}{'...' if len(formula) > 40 else ''}: too many atoms ({shown} of {symbol}; "
                f"MAX_AMOUNT = {MAX_AMOUNT:g} per formula unit): a typo such as O6050 for O6.050?"
            )
        previous = (symbol, amount)
    if pos != len(cleaned):
        raise FormulaError(f"formula {formula!r}: cannot read {cleaned[pos:]!r} (variable in place of an amount, or a stray letter)")
    if not amounts or sum(amounts.values()) <= 0:
        raise FormulaError(f"formula {formula!r}: no atoms")
    return Composition(amounts), variable


def _cations(amounts: dict[str, float]) -> Composition | None:
    """The composition read so far without any oxygen (its total amount is unknown)."""
    rest = {k: v for k, v in amounts.items() if k != "O" and v > 0}
    return Composition(rest) if rest else None


def _isotope_message(formula: str, symbol: str, following: str) -> str:
    typo = f"; or {symbol + following!r} is a mistyped two-letter symbol" if following.isupper() else ""
    return (
        f"formula {formula!r}: isotope symbol {symbol!r} ({ISOTOPE_SYMBOLS[symbol]}) is not supported: "
        f"pymatgen would read it as H, merging the compound with its hydride{typo}"
    )


def check_elements(symbols: list[str] | tuple[str, ...]) -> list[Element]:
    """Turn element symbols into :class:`Element`, raising ``ValueError`` naming any unknown one
    (isotope symbols ``D``/``T`` included)."""
    bad = [s for s in symbols if not (isinstance(s, str) and Element.is_valid_symbol(s))]
    if bad:
        raise ValueError(f"unknown element symbol(s): {bad}")
    isotopes = [s for s in symbols if s in ISOTOPE_SYMBOLS]
    if isotopes:
        raise ValueError(f"isotope symbol(s) {isotopes} not supported (pymatgen reads them as H)")
    return [Element(s) for s in symbols]
