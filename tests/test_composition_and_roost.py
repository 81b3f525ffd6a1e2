import numpy as np
import pytest
import torch
from pymatgen.core import Composition, Species
from torch_geometric.data import Batch

from matdiscovery.composition import (
    ELEMENT_FEATURE_DIM,
    composition_graph,
    element_features,
    element_table,
    magpie_feature_names,
    magpie_features,
)
from matdiscovery.models import Roost, fit, masked_loss, predict


def test_element_table_is_finite_and_standardised():
    table = element_table()
    assert table.shape == (95, ELEMENT_FEATURE_DIM)
    assert np.isfinite(table).all()
    np.testing.assert_allclose(table[1:].mean(axis=0), 0, atol=1e-5)


def test_element_features_rejects_unknown():
    with pytest.raises(ValueError, match="unknown element symbol 'Qq'"):
        element_features(["O", "Qq"])


def test_formula_with_unknown_symbol_names_it():
    with pytest.raises(ValueError, match="unknown element symbol 'Qq'"):
        magpie_features([Composition("NaCl"), Composition("Qq2O")])
    with pytest.raises(ValueError, match="beyond Pu"):
        magpie_features([Composition("AmO2")])


def test_oxidation_state_decorated_compositions_are_featurised():
    plain = magpie_features([Composition("FeO")])
    decorated = magpie_features([Composition({Species("Fe", 2): 1, Species("O", -2): 1})])
    np.testing.assert_allclose(decorated, plain)


def test_magpie_features_known_values():
    feats = magpie_features([Composition("NaCl"), Composition("Fe")])
    names = magpie_feature_names()
    assert feats.shape == (2, len(names))
    col = {n: i for i, n in enumerate(names)}
    assert feats[0, col["mean_Z"]] == pytest.approx((11 + 17) / 2)
    assert feats[0, col["range_Z"]] == pytest.approx(6)
    assert feats[1, col["avg_dev_Z"]] == pytest.approx(0)
    assert feats[1, col["stoich_0norm"]] == 1 and feats[0, col["stoich_2norm"]] == pytest.approx(np.sqrt(0.5))


def test_composition_graph_structure():
    g = composition_graph(Composition("YBa2Cu3O7"), y=[92.0, np.nan])
    assert g.num_nodes == 4 and g.edge_index.shape == (2, 12)
    assert float(g.weight.sum()) == pytest.approx(1.0)
    assert g.y.shape == (1, 2) and torch.isnan(g.y[0, 1])
    single = composition_graph(Composition("Fe"))
    assert single.edge_index.shape == (2, 1)


def test_roost_is_permutation_invariant_and_batched():
    torch.manual_seed(0)
    model = Roost(n_targets=2, dim=16, n_layers=2).eval()
    a = composition_graph(Composition("NaCl"))
    b = composition_graph(Composition("ClNa"))
    c = composition_graph(Composition("Fe2O3"))
    batch = Batch.from_data_list([a, b, c])
    out = model(batch)
    assert out.shape == (3, 2)
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(model(Batch.from_data_list([c]))[0], out[2])
    assert model.embed(batch).shape == (3, 16)


def test_masked_loss_ignores_nan():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[1.0, float("nan")], [5.0, float("nan")]])
    # task 0: mean of (0, 4) = 2; task 1 has no labels and is excluded from the mean
    assert float(masked_loss(pred, target)) == pytest.approx(2.0)


def test_fit_learns_a_simple_composition_rule():
    rng = np.random.default_rng(0)
    comps = [Composition({"Li": x, "O": 1 - x}) for x in rng.uniform(0.05, 0.95, 200)]
    data = [composition_graph(c, [c.get_atomic_fraction("Li")]) for c in comps]
    model = Roost(1, dim=16, n_layers=1)
    history = fit(model, data[:160], data[160:], epochs=40, lr=5e-3, batch_size=32, progress=False)
    pred = predict(model, data[160:])[:, 0]
    truth = np.array([d.y.item() for d in data[160:]])
    assert np.abs(pred - truth).mean() < 0.5 * np.abs(truth - truth.mean()).mean()
    assert history.best_epoch >= 0 and len(history.val_loss) == 40
