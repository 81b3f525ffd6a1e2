"""Sharded, resumable maps on Dask distributed: order, reuse, resume after failure, addresses."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from matdiscovery.stability.distributed import SCHEDULER_ENV, ShardError, dask_client, map_shards, shard_key


def square_shard(shard: list) -> pd.DataFrame:
    """Top-level (picklable) shard function; negative items fail, the first shard finishes last."""
    bad = [x for x in shard if x < 0]
    if bad:
        raise ValueError(f"negative item {bad[0]}")
    if shard and shard[0] == 0:
        time.sleep(0.2)  # results arrive out of order; the output must still be in item order
    return pd.DataFrame({"x": shard, "y": [x * x for x in shard]})


def torch_threads(_shard) -> int:
    import os

    import torch

    return torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")


@pytest.fixture(scope="module")
def client():
    with dask_client(n_workers=2) as c:
        yield c


def files(d):
    return sorted(p.name for p in d.glob("*.pkl"))


def test_results_in_order_and_rerun_reuses_everything(client, tmp_path):
    items = list(range(23))
    out = map_shards(square_shard, items, shard_size=5, cache_dir=tmp_path, key="k1", client=client, progress=False)
    assert out["x"].tolist() == items and out["y"].tolist() == [x * x for x in items]
    assert list(out.index) == list(range(23))
    assert out.attrs == {"shards_computed": 5, "shards_reused": 0}
    assert files(tmp_path) == [f"k1-{i:05d}-of-00005.pkl" for i in range(5)]
    again = map_shards(square_shard, items, shard_size=5, cache_dir=tmp_path, key="k1", client=client, progress=False)
    assert again.attrs == {"shards_computed": 0, "shards_reused": 5}
    pd.testing.assert_frame_equal(again, out)
    (tmp_path / "k1-00002-of-00005.pkl").unlink()
    third = map_shards(square_shard, items, shard_size=5, cache_dir=tmp_path, key="k1", client=client, progress=False)
    assert third.attrs == {"shards_computed": 1, "shards_reused": 4}
    pd.testing.assert_frame_equal(third, out)
    other = map_shards(square_shard, items, shard_size=5, cache_dir=tmp_path, key="k2", client=client, progress=False)
    assert other.attrs == {"shards_computed": 5, "shards_reused": 0}
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries


def test_failing_shard_keeps_the_others_and_rerun_resumes(client, tmp_path):
    items = list(range(12))
    items[7] = -7  # shard 1 of 3 (items 4..7)
    with pytest.raises(ShardError, match=r"shard 1 \(k-00001-of-00003\.pkl, items 4\.\.7\): ValueError: negative item -7"):
        map_shards(square_shard, items, shard_size=4, cache_dir=tmp_path, key="k", client=client, progress=False)
    assert files(tmp_path) == ["k-00000-of-00003.pkl", "k-00002-of-00003.pkl"]
    items[7] = 7
    out = map_shards(square_shard, items, shard_size=4, cache_dir=tmp_path, key="k", client=client, progress=False)
    assert out.attrs == {"shards_computed": 1, "shards_reused": 2}
    assert out["x"].tolist() == list(range(12))


def test_skip_records_a_failed_shard_and_does_not_retry_it(client, tmp_path):
    items = list(range(12))
    items[7] = -7  # shard 1 of 3 fails
    out = map_shards(square_shard, items, shard_size=4, cache_dir=tmp_path, key="s", client=client, progress=False,
                     on_error="skip")
    assert out["x"].tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    assert sorted(out.attrs["failed_items"]) == [4, 5, 6, 7]
    assert "negative item -7" in out.attrs["failed_items"][4]
    assert (tmp_path / "s-00001-of-00003.failed").exists()
    items[7] = 7  # even with the input fixed, a recorded failure is not retried until its file is deleted
    again = map_shards(square_shard, items, shard_size=4, cache_dir=tmp_path, key="s", client=client, progress=False,
                       on_error="skip")
    assert again.attrs["shards_computed"] == 0 and sorted(again.attrs["failed_items"]) == [4, 5, 6, 7]
    (tmp_path / "s-00001-of-00003.failed").unlink()
    third = map_shards(square_shard, items, shard_size=4, cache_dir=tmp_path, key="s", client=client, progress=False,
                       on_error="skip")
    assert third["x"].tolist() == list(range(12)) and third.attrs["failed_items"] == {}
    with pytest.raises(ValueError, match="on_error"):
        map_shards(square_shard, items, shard_size=4, cache_dir=tmp_path, key="s", client=client, on_error="ignore")


def test_shard_key_and_argument_checks(client, tmp_path):
    k = shard_key({"steps": 10, "fmax": 0.1}, "chgnet 0.4.2", ["abc", "def"])
    assert len(k) == 16 and int(k, 16) >= 0
    assert k == shard_key({"fmax": 0.1, "steps": 10}, "chgnet 0.4.2", ["abc", "def"])  # dict order irrelevant
    assert k != shard_key({"steps": 11, "fmax": 0.1}, "chgnet 0.4.2", ["abc", "def"])
    with pytest.raises(TypeError, match="JSON-able"):
        shard_key(object())
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="shard_size"):
            map_shards(square_shard, [1, 2], shard_size=bad, cache_dir=tmp_path, key="k", client=client)
    with pytest.raises(ValueError, match="key"):
        map_shards(square_shard, [1, 2], shard_size=1, cache_dir=tmp_path, key="../x", client=client)
    empty = map_shards(square_shard, [], shard_size=3, cache_dir=tmp_path, key="e", client=client, progress=False)
    assert len(empty) == 0 and empty.attrs == {"shards_computed": 0, "shards_reused": 0}


def test_wrong_row_count_names_the_shard(client, tmp_path):
    with pytest.raises(ShardError, match="shard 0 .*TypeError: fn returned a tuple"):
        map_shards(torch_threads, [1, 2], shard_size=2, cache_dir=tmp_path, key="t", client=client, progress=False)


def test_local_workers_run_torch_at_one_thread(client):
    results = client.gather([client.submit(torch_threads, i, pure=False) for i in range(4)])
    assert set(results) == {(1, "1")}


def malloc_trim(_x) -> str | None:
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_local_workers_keep_glibc_adaptive_mmap(client):
    """Dask's default MALLOC_TRIM_THRESHOLD_ (it made torch workers spend ~40 % of their time in page
    faults) is not set in our local workers."""
    assert client.gather([client.submit(malloc_trim, i, pure=False) for i in range(4)]) == [None] * 4


def test_env_var_address_is_used_and_cluster_left_running(client, monkeypatch):
    address = client.scheduler.address
    monkeypatch.setenv(SCHEDULER_ENV, address)
    with dask_client() as c:
        assert c.scheduler.address == address
        assert len(c.scheduler_info()["workers"]) == 2
        assert c.submit(sum, [1, 2]).result() == 3
    assert client.submit(sum, [3, 4]).result() == 7  # the cluster is not closed by the env-var client
    assert len(client.scheduler_info()["workers"]) == 2
