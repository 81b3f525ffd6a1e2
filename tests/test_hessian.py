"""Exactness of the matrix-free Hessian estimators against torch.func.hessian on tiny networks."""

import copy

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch.func import functional_call
from torch_geometric.data import Batch

from matdiscovery.hessian import (
    DenseOperator,
    HessianOperator,
    hutchinson_trace,
    lanczos_eigenvalues,
    power_iteration,
    slq_density,
    task_loss_fn,
    top_eigenvalues,
)
from matdiscovery.hessian.graphs import crystal_graph
from matdiscovery.hessian.trace import rademacher
from matdiscovery.models.cgcnn import CGCNN


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Intra-op threads fight other processes on a shared 2-core machine (OpenMP spin-waits make
    tiny autograd passes ~100× slower); the estimators are tested single-threaded."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _perovskites(n: int, seed: int = 0) -> list[Structure]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = 3.7 + 0.4 * rng.random()
        species = [["Sr", "Ba", "Ca"][i % 3], ["Ti", "Zr"][i % 2], "O", "O", "O"]
        coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
        s = Structure(Lattice.cubic(a), species, coords)
        s.perturb(0.05, min_distance=0.01, seed=seed + i) if hasattr(s, "perturb") else None
        out.append(s)
    return out


def _batch(n: int, seed: int = 0, nan: bool = False) -> Batch:
    rng = np.random.default_rng(seed)
    graphs = []
    for s in _perovskites(n, seed):
        y = rng.normal(size=3)
        if nan and rng.random() < 0.4:
            y[2] = np.nan
        g = crystal_graph(s, y, cutoff=5.0, max_neighbors=6, n_gaussians=4)
        graphs.append(g)
    b = Batch.from_data_list(graphs)
    b.x, b.edge_attr, b.y = b.x.double(), b.edge_attr.double(), b.y.double()
    return b


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = CGCNN(n_targets=3, dim=4, n_layers=1, edge_dim=4, hidden=8).double()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params <= 2000
    batches = [_batch(4, seed=1, nan=True), _batch(3, seed=2)]
    return model, batches


def exact_hessian(model, loss_fn, batches, weights) -> torch.Tensor:
    """Reference: torch.func.hessian of the weighted loss as a function of the flat parameters."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(theta):
        params = {n: c.reshape(s) for n, c, s in zip(names, torch.split(theta, sizes), shapes)}
        call = lambda b: functional_call(model, params, (b,))  # noqa: E731
        return sum(w * loss_fn(call, b) for w, b in zip(weights, batches))

    return torch.func.hessian(f)(flat)


@pytest.fixture(scope="module")
def exact(tiny):
    model, batches = tiny
    out = {}
    for task in (0, None):
        op = HessianOperator(model, task_loss_fn(task), batches)
        # several batches: the operator's loss divides by data-set label totals, weights 1
        out[task] = (op, exact_hessian(model, op.loss_fn, batches, op.batch_weights))
    return out


@pytest.mark.parametrize("method", ["double_backward", "forward_over_reverse"])
def test_hvp_matches_exact_hessian(tiny, exact, method):
    model, batches = tiny
    H = exact[0][1]
    op = HessianOperator(model, task_loss_fn(0), batches, method=method)
    V = torch.randn(3, op.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(op.matmat(V), V @ H, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(op.matvec(V[0]), H @ V[0], rtol=1e-10, atol=1e-10)
    assert op.n_matvecs == 4


def test_multitask_hessian_is_sum_of_task_hessians(tiny, exact):
    model, batches = tiny
    V = torch.randn(4, exact[0][0].dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    hv = {t: HessianOperator(model, task_loss_fn(t), batches).matmat(V) for t in range(3)}
    torch.testing.assert_close(V @ exact[None][1], hv[0] + hv[1] + hv[2])
    weighted = HessianOperator(model, task_loss_fn(None, weights=torch.tensor([2.0, 0.0, 1.0])), batches)
    torch.testing.assert_close(weighted.matmat(V), 2 * hv[0] + hv[2])


@pytest.mark.parametrize("task", [0, None])
def test_lanczos_top_eigenvalues_match_exact(exact, task):
    op, H = exact[task]
    ref = np.sort(torch.linalg.eigvalsh(H).numpy())[::-1][:5]
    res = lanczos_eigenvalues(op, k=5, tol=1e-10, max_steps=op.dim, seed=0)
    np.testing.assert_allclose(res.eigenvalues, ref, rtol=1e-4)
    assert res.converged and res.eigenvectors.shape == (5, op.dim)
    # Ritz vectors are eigenvectors: H v ≈ λ v for the top one
    v = res.eigenvectors[0]
    torch.testing.assert_close(H @ v, res.eigenvalues[0] * v, rtol=0, atol=1e-5 * abs(ref[0]))


def test_power_iteration_with_deflation_matches_exact(exact):
    op, H = exact[None]
    ev = torch.linalg.eigvalsh(H).numpy()
    ref = ev[np.argsort(-np.abs(ev))][:3]
    # the power iteration's slow convergence is run on the dense matrix (the products are
    # identical, test_hvp_matches_exact_hessian); a short run on the operator agrees with it
    res = power_iteration(DenseOperator(H), k=3, tol=1e-13, max_iter=50_000, seed=0)
    np.testing.assert_allclose(res.eigenvalues, ref, rtol=1e-4)
    short_dense = power_iteration(DenseOperator(H), k=2, tol=0, max_iter=30, seed=1, on_unconverged="ignore")
    short_op = power_iteration(op, k=2, tol=0, max_iter=30, seed=1, on_unconverged="ignore")
    np.testing.assert_allclose(short_op.eigenvalues, short_dense.eigenvalues, rtol=1e-8)
    assert short_op.n_matvecs == 60
    lm = top_eigenvalues(DenseOperator(H), k=3, method="lanczos", tol=1e-10, max_iter=op.dim, which="LM")
    np.testing.assert_allclose(lm.eigenvalues, ref, rtol=1e-4)


@pytest.mark.parametrize("task", [0, None])
def test_hutchinson_trace_within_ci(exact, task):
    op, H = exact[task]
    true = float(torch.trace(H))
    res = hutchinson_trace(op, n_probes=100, block=50, seed=0, confidence=0.99)
    assert res.contains(true), (true, res.ci_low, res.ci_high)
    assert res.n_matvecs == 100 and len(res.samples) == 100
    # the interval shrinks like 1/sqrt(n)
    small = hutchinson_trace(op, n_probes=20, block=16, seed=3)
    assert (small.ci_high - small.ci_low) > (res.ci_high - res.ci_low)


def test_deflated_hutchinson_is_unbiased_and_tighter(exact):
    op, H = exact[None]
    true = float(torch.trace(H))
    plain = hutchinson_trace(DenseOperator(H), n_probes=60, block=60, seed=1)
    deflated = hutchinson_trace(DenseOperator(H), n_probes=40, block=40, seed=1, deflate_steps=20)
    assert deflated.n_matvecs == 60
    assert deflated.stderr < plain.stderr / 2
    assert deflated.contains(true)
    on_op = hutchinson_trace(op, n_probes=40, block=40, seed=1, deflate_steps=20)
    assert on_op.estimate == pytest.approx(deflated.estimate, rel=1e-6)
    # exact when the Krylov space is the whole space
    full = hutchinson_trace(DenseOperator(H), n_probes=2, seed=0, deflate_steps=op.dim)
    assert full.estimate == pytest.approx(true, rel=1e-8)


def test_hutchinson_interval_has_nominal_coverage(exact):
    _, H = exact[None]
    dense, true = DenseOperator(H), float(torch.trace(H))
    hits = [hutchinson_trace(dense, n_probes=100, block=100, seed=s).contains(true) for s in range(200)]
    assert 0.9 <= np.mean(hits) <= 0.99  # 95% nominal


def test_hutchinson_is_exact_on_diagonal_and_stops_on_tol():
    d = torch.arange(1.0, 51.0, dtype=torch.float64)
    res = hutchinson_trace(DenseOperator(torch.diag(d)), n_probes=50, tol=1e-6, seed=0)
    assert res.estimate == pytest.approx(float(d.sum()))  # zᵀDz = tr D for ±1 probes
    assert len(res.samples) == 8  # stopped at min_probes: zero variance


def test_slq_density_integrates_to_one_and_matches_moments(exact):
    op, H = exact[None]
    dens = slq_density(op, n_probes=3, n_steps=20, seed=5)
    np.testing.assert_allclose(dens.weights.sum(axis=1), 1.0, rtol=1e-10)
    grid = dens.default_grid(4000, pad=0.3)
    assert np.trapezoid(dens.evaluate(grid), grid) == pytest.approx(1.0, abs=1e-3)
    # Gauss quadrature: exact for vᵀHᵖv with p ≤ 2m-1 for each probe
    V = rademacher(3, op.dim, torch.Generator().manual_seed(5), torch.float64)
    for p in (1, 2, 3):
        exact_m = [float(v @ torch.linalg.matrix_power(H, p) @ v / (v @ v)) for v in V]
        est_m = (dens.weights * dens.nodes**p).sum(axis=1)
        np.testing.assert_allclose(est_m, exact_m, rtol=1e-6)
    ev = torch.linalg.eigvalsh(H).numpy()
    assert dens.nodes.min() >= ev.min() - 1e-8 and dens.nodes.max() <= ev.max() + 1e-8
    # the largest node converges to the top eigenvalue
    assert dens.nodes.max() == pytest.approx(ev.max(), rel=1e-4)


def test_deflated_slq_keeps_outliers_exact_and_cuts_mean_error():
    torch.manual_seed(0)
    n = 200
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    ev = torch.cat([torch.tensor([300.0, 120, 80], dtype=torch.float64), 0.5 * torch.randn(n - 3, dtype=torch.float64)])
    H = DenseOperator(q @ torch.diag(ev) @ q.T)
    mean = float(ev.mean())
    plain = [slq_density(H, n_probes=1, n_steps=12, seed=s) for s in range(15)]
    defl = [slq_density(H, n_probes=1, n_steps=6, seed=s, deflate_steps=6) for s in range(15)]
    assert defl[0].n_matvecs == 12 and defl[0].weights.shape == (1, 12)
    np.testing.assert_allclose(defl[0].weights.sum(axis=1), 1.0, rtol=1e-12)
    err = lambda ds: np.median([abs(d.moment(1) - mean) for d in ds])  # noqa: E731
    assert err(defl) < err(plain) / 5
    assert np.mean([d.moment(1) for d in defl]) == pytest.approx(mean, rel=0.1)
    assert defl[0].nodes.max() == pytest.approx(300.0, rel=1e-8)
    with pytest.raises(ValueError, match="deflate_steps"):
        slq_density(H, deflate_steps=n)


def test_full_lanczos_density_recovers_spectrum():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(40, 40))
    H = torch.as_tensor(A + A.T)
    dens = slq_density(DenseOperator(H), n_probes=2, n_steps=40, seed=0)
    ev = np.sort(torch.linalg.eigvalsh(H).numpy())
    for i in range(2):
        np.testing.assert_allclose(np.sort(dens.nodes[i]), ev, atol=1e-8)


@pytest.mark.parametrize("method", ["double_backward", "forward_over_reverse"])
def test_parameter_subset_and_unused_parameters(tiny, exact, method):
    model, batches = tiny
    params = list(model.parameters())
    subset = [params[3], params[0]]  # any order
    op = HessianOperator(model, task_loss_fn(0), batches, params=subset, method=method)
    # rows/columns of the full exact Hessian for those parameters, in that order
    offsets = np.cumsum([0] + [p.numel() for p in params])
    idx = torch.cat([torch.arange(offsets[3], offsets[4]), torch.arange(offsets[0], offsets[1])])
    torch.testing.assert_close(op.dense(), exact[0][1][idx][:, idx])
    extra = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))  # not used by the loss
    if method == "forward_over_reverse":
        with pytest.raises(ValueError, match=r"params \[1\] are not parameters of the model"):
            HessianOperator(model, task_loss_fn(0), batches, params=[params[0], extra], method=method)
        return
    op2 = HessianOperator(model, task_loss_fn(0), batches, params=[params[0], extra], method=method)
    v = torch.ones(op2.dim, dtype=torch.float64)
    assert torch.all(op2.matvec(v)[-3:] == 0)


def test_clear_errors(tiny):
    model, batches = tiny
    with pytest.raises(ValueError, match="method must be"):
        HessianOperator(model, task_loss_fn(0), batches, method="magic")
    op = HessianOperator(model, task_loss_fn(0), batches)
    with pytest.raises(ValueError, match=r"\(k, \d+\) block"):
        op.matmat(torch.zeros(3))
    with pytest.raises(ValueError, match="task index 7"):
        HessianOperator(model, task_loss_fn(7), batches)
    with pytest.raises(ValueError, match="task index 7"):
        HessianOperator(model, task_loss_fn(7), batches[:1]).matvec(torch.zeros(op.dim, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_probes must be"):
        hutchinson_trace(op, n_probes=1)
    with pytest.raises(ValueError, match="method must be 'lanczos' or 'power'"):
        top_eigenvalues(op, method="qr")
    with pytest.raises(ValueError, match="which must be"):
        lanczos_eigenvalues(op, which="XX")


def test_label_weighted_streaming_equals_one_concatenated_batch(tiny, exact):
    """Batches with missing labels are weighted by label count: the operator over two batches is the
    Hessian of the loss over all their graphs at once, and streaming keeps no graph alive."""
    model, batches = tiny
    graphs = [g for b in batches for g in b.to_data_list()]
    whole = Batch.from_data_list(graphs)
    V = torch.randn(2, exact[0][0].dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for task in (2, None):  # task 2 has missing labels in the first batch
        streamed = HessianOperator(model, task_loss_fn(task), batches)
        assert not streamed.retain_graphs
        one = HessianOperator(model, task_loss_fn(task), [whole])
        torch.testing.assert_close(streamed.matmat(V), one.matmat(V), rtol=1e-10, atol=1e-10)
        assert streamed._grads is None  # nothing cached between products
        kept = HessianOperator(model, task_loss_fn(task), batches, retain_graphs=True)
        torch.testing.assert_close(kept.matmat(V), one.matmat(V), rtol=1e-10, atol=1e-10)


def _indefinite(n: int = 30, seed: int = 0) -> torch.Tensor:
    """A symmetric matrix whose largest-magnitude eigenvalue (−39.3) is negative and whose largest
    algebraic one is +38.6 (the case the old power iteration got wrong)."""
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    ev = torch.cat([torch.tensor([-39.3, 38.6, 20.0, 10.0], dtype=torch.float64), torch.linspace(-5, 5, n - 4,
                                                                                                dtype=torch.float64)])
    return q @ torch.diag(ev) @ q.T


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_which_is_honoured_by_every_method(method):
    H = DenseOperator(_indefinite())
    la = top_eigenvalues(H, k=2, method=method, which="LA", tol=1e-10, max_iter=5000)
    lm = top_eigenvalues(H, k=2, method=method, which="LM", tol=1e-10, max_iter=5000)
    np.testing.assert_allclose(la.eigenvalues, [38.6, 20.0], rtol=1e-5)
    np.testing.assert_allclose(lm.eigenvalues, [-39.3, 38.6], rtol=1e-5)
    assert la.which == "LA" and lm.which == "LM" and la.converged and lm.converged
    assert la.n_matvecs > 0 and lm.n_matvecs > 0


def test_unconverged_eigenvalues_warn_or_raise():
    from matdiscovery.hessian import UnconvergedEigenvaluesWarning

    H = DenseOperator(_indefinite())
    with pytest.warns(UnconvergedEigenvaluesWarning, match="only 0 of the 4"):
        res = top_eigenvalues(H, k=4, tol=1e-12, max_iter=5)
    assert res.n_converged < 4 and not res.converged and res.n_matvecs == 5
    with pytest.raises(RuntimeError, match="of the 3 requested"):
        top_eigenvalues(H, k=3, method="power", tol=1e-12, max_iter=3, on_unconverged="raise")
    with pytest.raises(ValueError, match="k = 31 eigenvalues"):
        top_eigenvalues(H, k=31)
    # two distinct eigenvalues: every Krylov space has 2 dimensions, so 3 eigenvalues cannot come back
    with pytest.raises(ValueError, match="Krylov space has only 2"):
        lanczos_eigenvalues(DenseOperator(torch.diag(torch.tensor([1.0, 1.0, 2.0, 2.0], dtype=torch.float64))), k=3)


def test_pyhessian_comparison_scores_both_against_the_reference(tiny):
    pytest.importorskip("pyhessian")
    from matdiscovery.hessian.compare import compare_with_pyhessian
    from matdiscovery.hessian.operator import masked_task_losses

    model, batches = tiny
    original_eig = getattr(torch, "eig", None)
    model = copy.deepcopy(model).float()
    batch = batches[1].clone()
    batch.x, batch.edge_attr, batch.y = batch.x.float(), batch.edge_attr.float(), batch.y.float()
    trunk = [p for n, p in model.named_parameters() if not n.startswith("head.2")]
    comp = compare_with_pyhessian(model, batch, lambda out, y: masked_task_losses(out, y)[0], batch.y,
                                  params=trunk, tol=1e-4, top_k=2, trace_probes=10, density_steps=10,
                                  density_probes=1, repeats=2, reference_probes=50, deflate_steps=5)
    assert comp.reference["dim"] == sum(p.numel() for p in trunk)
    assert all(p.requires_grad for p in model.parameters())  # PyHessian's freezing is undone
    s = comp.summary()
    assert list(s.index) == ["top1", "topk", "trace", "density"] and (s["repeats"] == 2).all()
    assert s.loc["top1", "ours_rel_error"] < 1e-3 and s.loc["top1", "pyhessian_rel_error"] < 1e-2
    assert (s["pyhessian_hvps"] > 0).all() and (s["ours_hvps"] > 0).all()
    assert s.loc["trace", "pyhessian_hvps"] == 10  # exactly trace_probes products
    m = comp.metrics()
    assert set(m["pyhessian_speedup"]) == {"top1", "topk", "trace", "density"} and m["hvp_over_gradient"] > 0
    assert getattr(torch, "eig", None) is original_eig  # the shim is removed again


def test_pyhessian_iterations_are_split_per_eigenvalue():
    from matdiscovery.hessian.compare import power_iterations_per_eigenvalue

    # start, 3 products; start, 2 products
    events = ["N", "H", "N", "H", "N", "H", "N", "N", "H", "N", "H", "N"]
    assert power_iterations_per_eigenvalue(events) == [3, 2]
    assert power_iterations_per_eigenvalue([]) == []
