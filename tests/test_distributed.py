"""Process-group helpers: sharding by whole batches, gathering in input order, agreeing on a status."""
from __future__ import annotations

import pytest

from darknet_torch.distributed import (DistContext, batch_shard, cpu_threads_per_process, gather_in_input_order,
                                       gather_lists, max_over_ranks)
from tests.multiprocess import in_forked_ranks


@pytest.mark.parametrize("count, batch_size, world", [(11, 3, 2), (7, 2, 3), (1, 4, 2), (0, 4, 2), (16, 4, 4)])
def test_batch_shard_deals_whole_batches_round_robin(count, batch_size, world):
    shards = [batch_shard(count, batch_size, DistContext(rank, world)) for rank in range(world)]
    assert sorted(i for shard in shards for i in shard) == list(range(count))
    for rank, shard in enumerate(shards):
        # re-batched by the rank, its inputs fall into exactly the one-process batches
        for start in range(0, len(shard), batch_size):
            batch = shard[start:start + batch_size]
            assert batch == list(range(batch[0], min(batch[0] + batch_size, count)))
            assert batch[0] % batch_size == 0 and (batch[0] // batch_size) % world == rank
    assert batch_shard(11, 3, DistContext(0, 2)) == [0, 1, 2, 6, 7, 8]
    assert batch_shard(11, 3, DistContext(1, 2)) == [3, 4, 5, 9, 10]


def test_one_process_helpers_change_nothing():
    ctx = DistContext()
    assert batch_shard(5, 2, ctx) == [0, 1, 2, 3, 4]
    assert gather_in_input_order([(1, "b"), (0, "a"), (2, None)], 3, ctx) == ["a", "b", None]
    assert gather_lists(("x", "y"), ctx) == ["x", "y"]
    assert max_over_ranks(1, ctx) == 1
    with pytest.raises(RuntimeError, match="input 1 was processed by no rank"):
        gather_in_input_order([(0, "a")], 2, ctx)
    with pytest.raises(RuntimeError, match="input 0 was processed by two ranks"):
        gather_in_input_order([(0, "a"), (0, "a")], 1, ctx)


def test_cpu_threads_are_shared_by_the_processes_of_a_machine():
    assert cpu_threads_per_process(1) >= 1
    assert cpu_threads_per_process(10_000) == 1


def test_two_processes_gather_to_rank_0_and_agree_on_the_worst_status(tmp_path):
    def work(ctx: DistContext):
        mine = batch_shard(5, 2, ctx)
        return (gather_in_input_order([(i, f"image {i}") for i in mine], 5, ctx),
                gather_lists([f"rank {ctx.rank}"], ctx), max_over_ranks(3 * ctx.rank, ctx))

    rank0, rank1 = in_forked_ranks(work, tmp_path / "store")
    assert rank0 == ([f"image {i}" for i in range(5)], ["rank 0", "rank 1"], 3)
    assert rank1 == (None, None, 3)
