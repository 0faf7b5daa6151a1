"""The publisher's partitioning: Kafka's murmur2, so keys land where any Kafka client would put them."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.publisher import murmur2, partition_for


@settings(max_examples=500, deadline=None)
@given(key=st.binary(max_size=64))
def test_murmur2_is_kafkas(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=1, max_size=40), partitions=st.integers(1, 64))
def test_partition_for_agrees_with_the_default_partitioner(key: bytes, partitions: int) -> None:
    everything = list(range(partitions))
    assert partition_for(key, partitions) == DefaultPartitioner()(key, everything, everything)


def test_known_values() -> None:
    # Values of the Java client's Utils.murmur2 (positive-masked), as used by Kafka's partitioner.
    assert murmur2(b"") & 0x7FFFFFFF == 275646681
    # Pinned from aiokafka's DefaultPartitioner (the Java client's rule): a message keeps its partition.
    assert (partition_for(b"m-42", 4), partition_for(b"m-42", 12), partition_for(b"abc", 7)) == (2, 10, 4)
    assert len({partition_for(f"m-{i}".encode(), 4) for i in range(100)}) == 4
