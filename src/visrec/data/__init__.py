"""Ingest: decode images, read labeled datasets, find near-duplicates and leak-free splits.

Importing this package loads numpy, Pillow and natsort only (no torch; the perceptual hashes are numpy).
"""

from __future__ import annotations

from visrec.data.dedup import (
    DEFAULT_THRESHOLD,
    DatasetHashes,
    hamming_pairs,
    hash_dataset,
    image_hash,
    near_duplicate_groups,
)
from visrec.data.images import IMAGE_EXTENSIONS, file_facts, is_image_file, load_image, to_rgb_array
from visrec.data.load import FORMATS, detect_format, load_dataset, read_dataset
from visrec.data.manifest import describe_files, read_manifest, write_manifest
from visrec.data.readers import LoadReport, Skipped, printable
from visrec.data.split import (
    LeakageReport,
    LeakPair,
    describe_splits,
    grouped_split,
    leakage_report,
    split_counts,
    split_value,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "DatasetHashes",
    "LeakPair",
    "LeakageReport",
    "LoadReport",
    "Skipped",
    "describe_files",
    "describe_splits",
    "detect_format",
    "file_facts",
    "grouped_split",
    "hamming_pairs",
    "hash_dataset",
    "image_hash",
    "is_image_file",
    "leakage_report",
    "load_dataset",
    "load_image",
    "near_duplicate_groups",
    "printable",
    "read_dataset",
    "read_manifest",
    "split_counts",
    "split_value",
    "to_rgb_array",
    "write_manifest",
]
