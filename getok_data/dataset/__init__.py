"""The dataset on disk (docs/FORMAT.md): names, manifest, sidecars, writer, reader, table contract.

Every consumer of a build folder (build, resume, verify, stats, inspect, exports, trainer,
scorer) goes through this package:

    from getok_data.dataset import Dataset
    ds = Dataset("out/syn_val")            # read-only: a missing folder is an error, never created
    ds.manifest                            # Manifest or None
    for sample in ds.samples():            # Sample: .key .meta .image .image_ext .table .members
        ...
"""
from .manifest import MANIFEST_FORMAT_VERSION, SAMPLE_FORMAT_VERSION, Manifest, ManifestError, Sidecar, parse_sidecar
from .names import ERRORS, LOCK, MANIFEST, is_shard_name, shard_index, shard_name, sidecar_name
from .reader import Dataset, DatasetError, Sample, iter_tar
from .table import TABLE_VERSION, TableError, check_table, load_npz, npz_bytes, table_bytes
from .writer import json_bytes, shard_is_complete, tar_bytes, write_shard

__all__ = [
    "Dataset", "DatasetError", "Sample", "iter_tar",
    "MANIFEST", "ERRORS", "LOCK", "shard_name", "sidecar_name", "shard_index", "is_shard_name",
    "TableError", "check_table", "load_npz", "npz_bytes", "table_bytes", "TABLE_VERSION",
    "Manifest", "ManifestError", "Sidecar", "parse_sidecar", "SAMPLE_FORMAT_VERSION", "MANIFEST_FORMAT_VERSION",
    "json_bytes", "tar_bytes", "write_shard", "shard_is_complete",
]
