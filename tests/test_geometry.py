import math

import pytest
from pymatgen.core import Lattice, Structure

from matdiscovery.geometry import min_interatomic_distance


def test_skewed_one_site_cell_uses_the_true_self_image_distance():
    s = Structure(Lattice.from_parameters(5, 5, 5, 90, 90, 15), ["Na"], [[0, 0, 0]])
    assert min_interatomic_distance(s) == pytest.approx(2 * 5 * math.sin(math.radians(7.5)), rel=1e-6)
    assert min_interatomic_distance(s) < 1.5 < min(s.lattice.abc)


def test_pairs_images_and_coincident_atoms():
    rocksalt = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert min_interatomic_distance(rocksalt) == pytest.approx(5.64 * math.sqrt(3) / 2)
    across_boundary = Structure(Lattice.cubic(10), ["Na", "Cl"], [[0.01, 0, 0], [0.99, 0, 0]])
    assert min_interatomic_distance(across_boundary) == pytest.approx(0.2)
    coincident = Structure(Lattice.cubic(4), ["Na", "Cl"], [[0, 0, 0], [0, 0, 0]])
    assert min_interatomic_distance(coincident) == 0.0
    big = Structure(Lattice.cubic(30), ["Na"], [[0, 0, 0]])
    assert min_interatomic_distance(big) == pytest.approx(30)


def test_empty_structure_is_an_error():
    with pytest.raises(ValueError, match="no sites"):
        min_interatomic_distance(Structure(Lattice.cubic(3), [], []))
