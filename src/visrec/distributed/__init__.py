"""Scale-out engines: run the indexing pipeline on an existing distributed engine (Ray).

Nothing here imports Ray until a function is called; install it with ``pip install 'visrec[ray]'``.
"""

from __future__ import annotations

from visrec.distributed.ray_engine import (
    RayConfig,
    RayEmbedResult,
    embed_encoder_with_ray,
    embed_to_parquet,
    embed_with_ray,
    ray_session,
    read_embeddings_parquet,
)

__all__ = [
    "RayConfig",
    "RayEmbedResult",
    "embed_encoder_with_ray",
    "embed_to_parquet",
    "embed_with_ray",
    "ray_session",
    "read_embeddings_parquet",
]
