"""Readers: input files → :class:`Record` (a trajectory, or the findings that reject it).

``io`` expands inputs into units (a file, or one member of a zip archive) and reads their bytes
within bounds; ``parse`` turns a unit's bytes into records (JSON, JSONL, Parquet); ``detect``
picks the reader of each parsed record (``sniff``; ``--format`` forces one) and names the closest
format of a record none recognises; ``base`` is the contract every format's reader keeps, and
``registry`` finds them (one module per format). Every record comes out either accepted or
rejected with its location, never dropped.
"""

from umi_data.readers.base import CHAT_ID, NO_CONFIG, Episode, FormatDoc, Reader, ReaderConfig, Signature
from umi_data.readers.detect import _SHAPES, closest_formats, prefixed
from umi_data.readers.io import (
    COMPRESSIONS,
    DEFAULT_READ,
    INPUT_SUFFIXES,
    MAX_DEPTH,
    ReadOptions,
    Record,
    Unit,
    duplicate_keys,
    expand,
    input_kind,
    read_bytes,
)
from umi_data.readers.parse import parse_unit, read_inputs, read_unit, read_units
from umi_data.readers.registry import FORMATS, READER_CLASSES, READERS, readers

__all__ = [
    "CHAT_ID",
    "COMPRESSIONS",
    "DEFAULT_READ",
    "FORMATS",
    "INPUT_SUFFIXES",
    "MAX_DEPTH",
    "NO_CONFIG",
    "READERS",
    "READER_CLASSES",
    "_SHAPES",
    "Episode",
    "FormatDoc",
    "ReadOptions",
    "Reader",
    "ReaderConfig",
    "Record",
    "Signature",
    "Unit",
    "closest_formats",
    "duplicate_keys",
    "expand",
    "input_kind",
    "parse_unit",
    "prefixed",
    "read_bytes",
    "read_inputs",
    "read_unit",
    "read_units",
    "readers",
]
