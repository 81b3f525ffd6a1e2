"""CGCNN and MPNN models, the crystal/molecule graph builders, the QM8 CSV layout and the MTL helpers."""

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch

from matdiscovery.datasets import QM8_TARGETS, load_qm8
from matdiscovery.hessian.graphs import GraphStore, crystal_graph, gaussian_expansion, molecule_graph
from matdiscovery.hessian.mtl import TargetTransform, TaskData, capacity_matched_dim, shared_parameters, split_indices
from matdiscovery.models.cgcnn import CGCNN
from matdiscovery.models.mpnn import MPNN


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _srtio3(a: float = 3.905) -> Structure:
    return Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def test_crystal_graph_neighbours_and_distances():
    g = crystal_graph(_srtio3(), y=[1.0, np.nan], cutoff=4.0, max_neighbors=6, n_gaussians=8)
    assert g.num_nodes == 5 and g.x.shape == (5, 23) and g.edge_attr.shape[1] == 8
    # Ti (site 1) has 6 O neighbours at a/2 = 1.9525 Å
    ti_edges = g.edge_index[1] == 1
    assert int(ti_edges.sum()) == 6
    # O has 2 Ti at a/2, then 4 Sr and 8 O tied at a/√2: ties beyond max_neighbors are all kept
    assert int((g.edge_index[1] == 2).sum()) == 14
    assert set(g.edge_index[0, ti_edges].tolist()) == {2, 3, 4}
    expected = gaussian_expansion(np.array([3.905 / 2]), 0.0, 4.0, 8)[0]
    np.testing.assert_allclose(g.edge_attr[ti_edges][0].numpy(), expected, rtol=1e-5)
    assert g.y.shape == (1, 2) and torch.isnan(g.y[0, 1])
    with pytest.raises(ValueError, match="no neighbours within 0.5"):
        crystal_graph(_srtio3(), cutoff=0.5)
    with pytest.raises(TypeError, match="pymatgen Structure"):
        crystal_graph("SrTiO3")


def test_cgcnn_is_invariant_to_site_order_and_batches():
    torch.manual_seed(0)
    model = CGCNN(n_targets=2, dim=8, n_layers=2, edge_dim=32).eval()
    s = _srtio3()
    shuffled = Structure(s.lattice, [s[i].species for i in (4, 2, 0, 3, 1)], [s[i].frac_coords for i in (4, 2, 0, 3, 1)])
    a, b, c = crystal_graph(s), crystal_graph(shuffled), crystal_graph(_srtio3(4.2))
    out = model(Batch.from_data_list([a, b, c]))
    assert out.shape == (3, 2)
    torch.testing.assert_close(out[0], out[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(Batch.from_data_list([c]))[0], out[2], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out[0], out[2])  # the lattice constant matters
    with pytest.raises(ValueError, match="edge_attr has 8 features"):
        model(Batch.from_data_list([crystal_graph(s, n_gaussians=8)]))


def test_molecule_graph_and_mpnn():
    g = molecule_graph("[H]C([H])([H])O[H]", y=[0.3, 0.1])  # heavy atoms; H as counts
    assert g.num_nodes == 2 and g.edge_index.shape == (2, 2) and g.edge_attr.shape == (2, 3)
    assert g.x[:, 0].tolist() == [6, 8] and g.x[:, 4].tolist() == [3, 1]
    torch.manual_seed(0)
    model = MPNN(n_targets=2, dim=8, n_layers=2).eval()
    batch = Batch.from_data_list([g, molecule_graph("OC([H])([H])[H]", [0, 0]), molecule_graph("N#N", [0, 0])])
    out = model(batch)
    assert out.shape == (3, 2) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="cannot parse SMILES 'C1CC'"):
        molecule_graph("C1CC")


QM8_HEADER = ("smiles,E1-CC2,E2-CC2,f1-CC2,f2-CC2,E1-PBE0,E2-PBE0,f1-PBE0,f2-PBE0,"
              "E1-PBE0,E2-PBE0,f1-PBE0,f2-PBE0,E1-CAM,E2-CAM,f1-CAM,f2-CAM")


def _qm8_row(smiles: str, base: float) -> str:
    vals = [base + 0.01 * i for i in range(8)]
    return ",".join([smiles, *map(str, vals), *map(str, vals[4:8]), *map(str, [base + 0.1 * i for i in range(4)])])


def test_load_qm8_moleculenet_layout(tmp_path):
    csv = tmp_path / "qm8.csv"
    csv.write_text("\n".join([QM8_HEADER, _qm8_row("[H]C([H])([H])[H]", 0.43), _qm8_row("[H]O[H]", 0.28),
                              _qm8_row("C#N", 0.3)]) + "\n")
    frame = load_qm8(csv)
    assert list(frame.columns) == ["smiles", *QM8_TARGETS] and len(frame) == 3
    assert frame.loc[1, "E2-CC2"] == pytest.approx(0.29)
    assert frame.loc[0, "E1-CAM"] == pytest.approx(0.43)
    graphs = [molecule_graph(s, frame.loc[i, ["E1-CC2", "f1-CC2"]].to_numpy(float)) for i, s in enumerate(frame.smiles)]
    assert graphs[1].num_nodes == 1 and graphs[1].y.shape == (1, 2)


def test_load_qm8_bad_value_raises_or_skips(tmp_path):
    csv = tmp_path / "qm8.csv"
    bad = _qm8_row("CC", 0.2).replace("0.21", "abc", 1)
    csv.write_text("\n".join([QM8_HEADER, _qm8_row("C", 0.4), bad]) + "\n")
    with pytest.raises(ValueError, match="row 1"):
        load_qm8(csv)
    with pytest.warns(UserWarning, match="skipped 1"):
        assert len(load_qm8(csv, on_error="skip")) == 1


def _tiny_data(n: int = 40, seed: int = 0) -> TaskData:
    rng = np.random.default_rng(seed)
    graphs = []
    for i in range(n):
        s = _srtio3(3.7 + 0.5 * rng.random())
        a = s.lattice.a
        y = [a, 2 * a + rng.normal(0, 0.01), np.nan if i % 3 == 0 else -a]
        graphs.append(crystal_graph(s, y, n_gaussians=32))
    tr, va, te = split_indices(n, (-1, n // 5, n // 5), seed=0)
    return TaskData("perov_5", ("a", "b", "c"), GraphStore(graphs), tr, va, te)


def test_graph_store_batches_equal_pyg_batches():
    graphs = [crystal_graph(_srtio3(3.7 + 0.1 * i), [i, np.nan], n_gaussians=32) for i in range(5)]
    store = GraphStore(graphs)
    idx = [3, 0, 4]
    ours, ref = store.batch(idx), Batch.from_data_list([graphs[i] for i in idx])
    for key in ("x", "edge_index", "edge_attr", "z", "batch", "ptr"):
        torch.testing.assert_close(ours[key], ref[key])
    torch.testing.assert_close(ours.y, ref.y, equal_nan=True)
    assert ours.num_graphs == 3
    torch.manual_seed(0)
    model = CGCNN(n_targets=2, dim=8, n_layers=1).eval()
    torch.testing.assert_close(model(ours), model(ref))
    mols = [molecule_graph(s, [0.0]) for s in ("CCO", "N#N", "c1ccccc1")]
    mpnn = MPNN(1, dim=8).eval()
    torch.testing.assert_close(mpnn(GraphStore(mols).batch([2, 1])), mpnn(Batch.from_data_list([mols[2], mols[1]])))
    with pytest.raises(IndexError, match="out of range"):
        store.batch([5])
    with pytest.raises(ValueError, match="zero graphs"):
        store.batch([])


def test_gine_layer_and_embedding_match_pyg_and_lookups():
    from torch_geometric.nn import GINEConv

    from matdiscovery.models.mpnn import ATOM_VOCAB, CategoricalEmbedding, GINELayer

    torch.manual_seed(0)
    layer = GINELayer(8)
    with torch.no_grad():
        layer.eps.fill_(0.3)
    ref = GINEConv(layer.nn, train_eps=True)
    with torch.no_grad():
        ref.eps.fill_(0.3)
    h, e = torch.randn(5, 8), torch.randn(6, 8)
    ei = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 0, 2]])
    torch.testing.assert_close(layer(h, ei, e), ref(h, ei, e))
    emb = CategoricalEmbedding(ATOM_VOCAB, 4)
    x = molecule_graph("CC(=O)N", [0.0]).x
    lookups = sum(t(x[:, i].long()) for i, t in enumerate(emb.tables))
    torch.testing.assert_close(emb(x), lookups)
    with pytest.raises(IndexError, match="out of range"):
        emb(torch.full((1, len(ATOM_VOCAB)), 200))


def test_target_transform_round_trip_and_heavy_tails():
    y = torch.tensor([[0.2, 0.0], [0.3, 0.5], [np.nan, -0.002], [0.25, 0.01]])
    tf = TargetTransform.fit(("E", "f"), y, {"f": 1e-3})
    z = tf.raw_to_unit(y)
    torch.testing.assert_close(tf.unit_to_raw(z), y, equal_nan=True, rtol=1e-5, atol=1e-7)
    assert torch.nanmean(z, dim=0).abs().max() < 1e-5  # standardised on the training labels
    assert z[1, 1] - z[3, 1] < 2 * (z[3, 1] - z[0, 1])  # asinh compresses the tail
    with pytest.raises(ValueError, match="no training labels"):
        TargetTransform.fit(("E",), torch.tensor([[np.nan]]), {})


def test_split_indices_and_capacity_matched_width():
    tr, va, te = split_indices(100, (-1, 10, 20), seed=1)
    assert len(tr) == 70 and len(va) == 10 and len(te) == 20
    assert len(set(tr) | set(va) | set(te)) == 100
    with pytest.raises(ValueError, match="do not fit"):
        split_indices(10, (5, 5, 5))
    from matdiscovery.hessian.mtl import n_shared_parameters

    wide = capacity_matched_dim("mpnn", 4, 16, 2)
    assert n_shared_parameters("mpnn", 4, wide, 2) >= 4 * n_shared_parameters("mpnn", 4, 16, 2)
    assert n_shared_parameters("mpnn", 4, wide - 1, 2) < 4 * n_shared_parameters("mpnn", 4, 16, 2)


def test_every_method_trains_in_lock_step_with_the_shared_early_stopping_rule():
    from matdiscovery.hessian.multitask import ModelStack, TrainConfig, train_seed

    data = _tiny_data()
    assert data.label_counts().loc["c", "train"] < len(data.train_idx)
    cfg = TrainConfig(dim=8, n_layers=1, epochs=3, batch_size=8, curvature_every=1, curvature_batch=8, curvature_steps=3)
    run = train_seed(data, cfg, seed=0)
    err = run.errors(data)
    assert set(err["method"]) == {"stl", "mtl", "mtl_wide", "curvature", "uw", "upgrad", "famo"}
    assert (err.groupby("method").size() == 3).all()  # STL: one network per task, one row each
    assert (err.loc[err.task == "c", "n_test"] < len(data.test_idx)).all()  # masked labels
    # STL networks predict only their own task
    assert np.isnan(run.predictions["stl:0"][:, 1:]).all() and not np.isnan(run.predictions["stl:0"][:, 0]).any()
    assert (err["best_epoch"].between(0, 2)).all()
    # curvature weights: sharper task → smaller weight, mean 1
    assert len(run.curvature_history) == 3
    for _, lam, w in run.curvature_history:
        assert w.mean() == pytest.approx(1.0, rel=1e-5) and np.argmax(w) == np.argmin(lam)
    # the selected networks reproduce the recorded test predictions
    net = run.model("stl", 1)
    pred = data.transform.unit_to_raw(net(data.batch("test"))).detach().numpy()[:, 1]
    np.testing.assert_allclose(pred, run.predictions["stl:1"][:, 1], rtol=1e-4, atol=1e-5)
    assert run.wide_dim > cfg.dim
    head = {id(p) for p in net.head[-1].parameters()}
    assert all(id(p) not in head for p in shared_parameters(net))
    # stacked networks compute what each network computes alone
    nets = [CGCNN(3, dim=8, n_layers=1) for _ in range(3)]
    stack = ModelStack(nets)
    b = data.batch("val")
    torch.testing.assert_close(stack(b)[2], nets[2](b), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown methods"):
        train_seed(data, TrainConfig(methods=("mtl", "magic")), seed=0)


def test_qm9_smiles_become_graphs():
    from matdiscovery.datasets import load_qm9

    frame = load_qm9(limit=5)
    graphs = [molecule_graph(s, [h, l]) for s, h, l in zip(frame.smiles, frame.homo_Ha, frame.lumo_Ha)]
    assert [g.num_nodes for g in graphs] == [1, 1, 1, 2, 2]  # CH4, NH3, H2O, C2H2, HCN: heavy atoms
    assert all(g.y.shape == (1, 2) for g in graphs)


def test_gaussian_expansion_has_no_subnormal_tails():
    g = gaussian_expansion(np.array([0.5, 3.0, 5.9]), 0.0, 6.0, 32).astype(np.float32)
    tiny = (g != 0) & (np.abs(g) < np.finfo(np.float32).tiny)
    assert not tiny.any()
    assert g[0, -1] == 0.0 and g[2, -1] > 0.5  # far tail zeroed, own centre kept


def test_summed_loss_curvature_is_sum_of_task_curvatures():
    from matdiscovery.hessian.mtl import task_curvature

    data = _tiny_data(12, seed=1)
    batch = data.batch("train")
    torch.manual_seed(0)
    model = CGCNN(n_targets=3, dim=4, n_layers=1, hidden=8)
    kw = dict(n_eigs=2, trace_probes=6, slq_probes=1, slq_steps=5, max_steps=10, trace_deflate=0)
    parts = [task_curvature(model, batch, data.transform, t, **kw) for t in (0, 1, 2)]
    total = task_curvature(model, batch, data.transform, None, **kw)
    # the Hessian is linear in the loss: with the same probes the Hutchinson samples add up exactly
    np.testing.assert_allclose(total.trace.samples, sum(p.trace.samples for p in parts), rtol=1e-4, atol=1e-6)
    # and the top eigenvalue of a sum is at most the sum of the top eigenvalues
    assert total.eigenvalues[0] <= sum(p.eigenvalues[0] for p in parts) + 1e-4
    assert 0 <= total.negative_fraction <= 1
