import pytest
from pymatgen.core import Composition, Element

from matdiscovery.chemistry import (
    MAX_AMOUNT,
    FormulaError,
    OxygenUnknownError,
    check_elements,
    parse_formula,
)


@pytest.mark.parametrize(
    "formula, expected, variable",
    [
        ("MgB2", "Mg1 B2", False),
        ("YBa2Cu3O7-X", "Y1 Ba2 Cu3 O7", True),
        ("La2CuO4+Z", "La2 Cu1 O4", True),
        ("Y1Ba2Cu4O8+-Z", "Y1 Ba2 Cu4 O8", True),
        ("Ba0.2La1.8Cu1O4-Y", "Ba0.2 La1.8 Cu1 O4", True),
        ("Nb3Ge", "Nb3 Ge1", False),
        ("Nb1O", "Nb1 O1", False),
        ("Y1O1", "Y1 O1", False),
    ],
)
def test_parse_formula_valid(formula, expected, variable):
    comp, var = parse_formula(formula)
    assert comp == Composition(expected)
    assert var is variable


@pytest.mark.parametrize(
    "formula, message",
    [
        ("Y1Ba2Cu3OX", "variable 'X' in place of the amount of O"),
        ("Y1Ba2Cu3OY", "variable 'Y' in place of the amount of O"),
        ("La2Cu1OD", "variable 'D' in place of the amount of O"),
        ("Yb16Ba1Cu2Oz", "variable 'z' in place of the amount of O"),
        ("Ca-0.1Cu2O4", "unexpected character"),
        ("Xx2O", "unknown element symbol 'Xx'"),
        ("", "empty formula"),
        ("Hg1Sr2Cu2O6=z", "unexpected character"),
    ],
)
def test_parse_formula_malformed_names_the_problem(formula, message):
    with pytest.raises(FormulaError, match=message):
        parse_formula(formula)


def test_check_elements():
    assert check_elements(["Zr", "In", "Ni"]) == [Element("Zr"), Element("In"), Element("Ni")]
    with pytest.raises(ValueError, match="Qq"):
        check_elements(["Zr", "Qq"])


@pytest.mark.parametrize(
    "formula, cations",
    [
        ("Y1Ba2Cu3OX", "Y1 Ba2 Cu3"),
        ("Y1Ba2Cu3OY", "Y1 Ba2 Cu3"),      # a trailing OY is not an extra yttrium atom
        ("Yb16Ba1Cu2Oz", "Yb16 Ba1 Cu2"),
        ("Bi2Sr2Ca1Cu2OZ", "Bi2 Sr2 Ca1 Cu2"),
    ],
)
def test_unknown_oxygen_carries_the_cations(formula, cations):
    with pytest.raises(OxygenUnknownError, match="in place of the amount of O") as info:
        parse_formula(formula)
    assert info.value.cations == Composition(cations)
    assert isinstance(info.value, FormulaError)  # existing callers still see a FormulaError


def test_unknown_oxygen_not_terminal_has_no_cations():
    with pytest.raises(OxygenUnknownError) as info:
        parse_formula("Y1Ba2Cu3OzF1")
    assert info.value.cations is None


@pytest.mark.parametrize(
    "formula, message",
    [
        # 1e27 atoms was accepted; 400 digits gave 'Feinf' and an OverflowError further on
        ("Fe" + "9" * 27, r"too many atoms \(99999999\.\.\. \(27 digits\) of Fe; MAX_AMOUNT = 1000 per formula unit\)"),
        ("Fe" + "9" * 400, r"too many atoms \(99999999\.\.\. \(400 digits\) of Fe; MAX_AMOUNT"),
        ("Y1Ba2Cu3O6050", r"too many atoms \(6050 of O; MAX_AMOUNT = 1000 per formula unit\): a typo"),  # a real SuperCon typo (O6.050)
        ("Fe600Co1Fe600", r"too many atoms \(600 \(1200 in all\) of Fe;"),
    ],
)
def test_parse_formula_amount_bound(formula, message):
    with pytest.raises(FormulaError, match=message):
        parse_formula(formula)


def test_parse_formula_amount_bound_keeps_real_large_formulas():
    assert MAX_AMOUNT == 1000
    for formula in ("Cd99.995Mn0.005", "B105", "Ba24Si100", "Na24Si136", "Fe1000"):
        parse_formula(formula)


@pytest.mark.parametrize(
    "formula, message",
    [
        ("D2O", r"isotope symbol 'D' \(deuterium\) is not supported: pymatgen would read it as H"),
        ("T2O", r"isotope symbol 'T' \(tritium\) is not supported"),
        ("D3S1", r"isotope symbol 'D'"),  # deuterated H3S, Tc ~150 K vs ~200 K: not the same material
        ("Pd1T0.81", r"isotope symbol 'T'"),
        ("Sr4V2.7TI0.3O9.51", r"isotope symbol 'T' .* or 'TI' is a mistyped two-letter symbol"),
    ],
)
def test_parse_formula_rejects_isotopes(formula, message):
    with pytest.raises(FormulaError, match=message):
        parse_formula(formula)


def test_parse_formula_d_as_oxygen_variable_is_unchanged():
    assert parse_formula("La2CuO4+D") == (Composition("La2CuO4"), True)
    with pytest.raises(FormulaError, match="variable 'D' in place of the amount of O"):
        parse_formula("La2Cu1OD")
    with pytest.raises(ValueError, match="isotope"):
        check_elements(["Pd", "D"])
