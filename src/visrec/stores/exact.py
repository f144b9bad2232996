"""The brute-force numpy store: exact top-k by a chunked matrix product. The reference for every backend."""

from __future__ import annotations

from visrec.stores._common import BaseStore


class ExactStore(BaseStore):
    """Exact inner-product search over a contiguous float32 matrix (see :class:`BaseStore` for the API).

    Search costs ``O(q * n * dim)`` per call, in blocks of bounded memory; ties are broken by insertion order.
    Deleting compacts the matrix. Fine up to a few hundred thousand vectors with batched queries.
    """

    backend = "exact"

    def __init__(self, dim: int) -> None:
        """An empty store of ``dim``-wide vectors."""
        super().__init__(dim)
