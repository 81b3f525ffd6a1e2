"""The cleaning rules on the real SuperCon export (needs `dvc pull`; a few seconds)."""

import re
import warnings

import numpy as np
import pytest
from pymatgen.core import Composition

from matdiscovery import datasets
from matdiscovery import superconductors as sc


@pytest.fixture(scope="module")
def cleaned():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = datasets.load_supercon_nims(on_error="skip")
    table, report = sc.clean_supercon(raw)
    return raw, table, report


def test_every_row_is_accounted_for(cleaned):
    raw, table, report = cleaned
    assert report.n_loader_skipped == len(raw.attrs["skipped"]) > 0
    assert sum(report.loader_skipped_by_reason.values()) == report.n_loader_skipped
    dropped = report.n_implausible_tc + report.n_beyond_pu
    assert report.n_rows_kept <= len(raw) - max(report.n_implausible_tc, report.n_beyond_pu)
    assert report.n_rows_kept >= len(raw) - dropped
    assert report.n_compositions == len(table) == table["key"].nunique()
    assert report.n_rows_kept == report.n_compositions + report.n_merged_duplicates == table["n_measurements"].sum()


def test_no_oxygen_variable_read_as_yttrium(cleaned):
    raw, table, report = cleaned
    assert report.loader_skipped_by_reason["oxygen content unknown (Oz/OX)"] > 0
    assert not any(re.search(r"O[YDyd]$", f) for f in table["formula"])


def test_tc_plausible_and_classes_present(cleaned):
    _, table, _ = cleaned
    no_h = np.array(["H" not in c and "D" not in c for c in table["composition"]])
    assert table["tc_K"][no_h].max() <= sc.cleaning.MAX_PLAUSIBLE_TC_K
    counts = table["chem_class"].value_counts()
    assert counts["cuprate"] > 3000 and counts["iron_based"] > 500
    assert table.set_index("key").loc[sc.composition_key(Composition("MgB2")), "tc_K"] > 30
