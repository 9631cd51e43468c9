"""Two gloo processes hold the same statistics as one process over the global batch."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from isobn import IsoBN


def global_batches(steps=3, d=6):
    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(d, d, generator=g)
    return [torch.randn(20, d, generator=g) @ mixing + 2.0 for _ in range(steps)]


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    layer = IsoBN(6).train()
    for batch in global_batches():
        # uneven shards: rank 0 gets 12 rows, rank 1 gets 8
        shard = batch[:12] if rank == 0 else batch[12:]
        layer(shard)
    torch.save(layer.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_two_processes_match_single_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = IsoBN(6).train()
    for batch in global_batches():
        single(batch)
    for rank in range(2):
        state = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert state["num_batches_tracked"].item() == 3
        for key in ("running_std", "running_cov"):
            torch.testing.assert_close(state[key], single.state_dict()[key], rtol=1e-6, atol=1e-6)


def test_no_sync_without_process_group():
    assert not dist.is_initialized()
    layer = IsoBN(6).train()
    out = layer(global_batches(1)[0])
    assert torch.isfinite(out).all()
