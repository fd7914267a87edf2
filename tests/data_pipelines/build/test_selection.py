"""The one global decision of a build: near-duplicates, balancing, shard assignment, all
independent of the order clips arrive in."""
import numpy as np

from data_pipelines.build.selection import near_duplicates, plan_clips
from data_pipelines.build.shard_writer import shard_path

from . import tiny_config


def _hash(bits_set: int, k: int = 3) -> np.ndarray:
    """k identical uint64 hashes with the lowest `bits_set` bits set."""
    return np.full(k, (1 << bits_set) - 1, np.uint64)


def _random_hash(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**63, 3).astype(np.uint64)


def test_of_near_duplicates_the_smallest_source_id_stays_whatever_the_order():
    hashed = [("c#0-7", _hash(2)), ("a#0-7", _hash(0)), ("b#0-7", _hash(40)), ("d", _hash(44))]
    for order in (hashed, hashed[::-1]):
        assert near_duplicates(sorted(order, key=lambda e: e[0]), 6) == {
            "c#0-7": "a#0-7", "d": "b#0-7"}


def test_plan_drops_duplicates_and_cuts_buckets_into_near_equal_contiguous_shards():
    cfg = tiny_config("records_per_shard=4")
    # Random hashes lie ~32 bits apart; "copy" is clip00's with one bit flipped, and sorts after.
    entries = [(f"clip{i:02d}", "v8x32x32", _random_hash(i)) for i in range(10)]
    entries += [("copy", "v8x32x32", _random_hash(0) ^ np.uint64(1)),
                ("img", "i32x32", _random_hash(10))]
    plan = plan_clips(entries[::-1], cfg)
    assert plan["drop"] == {"copy": ["duplicate", plan["drop"]["copy"][1]]}
    assert "clip00" in plan["drop"]["copy"][1]
    shards = [plan["shard"][f"clip{i:02d}"] for i in range(10)]
    assert shards == [[0, 3]] * 4 + [[1, 3]] * 3 + [[2, 3]] * 3
    assert plan["shard"]["img"] == [0, 1]
    assert shard_path("v8x32x32", 1, 3) == "v8x32x32/shard-00001-of-00003.array_record"


def test_without_dedup_every_clip_stays_and_balancing_is_seeded():
    entries = [(f"c{i}", "b", _random_hash(i)) for i in range(40)]
    assert plan_clips(entries, tiny_config("dedup=false"))["drop"] == {}
    balanced = tiny_config("balance=true", "balance_clusters=4")
    first = plan_clips(entries, balanced)
    assert first == plan_clips(entries[::-1], balanced)
    assert first["drop"] and {reason for reason, _ in first["drop"].values()} == {"balanced_out"}
    assert len(first["shard"]) + len(first["drop"]) == 40
