"""The processors' collector schedule: defined in schemas.runtime (the one collector policy), named here too.

The runners (kafka_runner, local_runner) import BatchGc from this path; the policy itself, both kinds
(edge and batches) side by side, is schemas/runtime.py.
"""

from __future__ import annotations

from schemas.runtime import FULL_COLLECTION_EVERY, YOUNG_THRESHOLD, BatchGc, tune_gc_for_batches

__all__ = ["FULL_COLLECTION_EVERY", "YOUNG_THRESHOLD", "BatchGc", "tune_gc_for_batches"]
