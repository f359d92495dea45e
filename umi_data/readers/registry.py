"""The input formats, found rather than listed: every :class:`Reader` subclass defined in a module
of this package, in detection order (``rank``). Adding a format is adding its module."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from pathlib import Path

from umi_data.readers.base import NO_CONFIG, Reader, ReaderConfig

# This package's own machinery: they import the registry (or hold no format), so they are not
# searched for readers. Every other module is.
_MACHINERY = frozenset({"base", "io", "registry", "detect", "parse", "catalog"})


def discover(directory: Path, package: str) -> tuple[type[Reader], ...]:
    """The reader classes defined in the modules of ``package`` (found in ``directory``), by
    rank. Raises ``TypeError`` when two share a name or a rank (detection order must be total)."""
    found: list[type[Reader]] = []
    for info in sorted(pkgutil.iter_modules([str(directory)]), key=lambda m: m.name):
        if info.name in _MACHINERY or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        found.extend(
            obj for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, Reader) and obj.__module__ == module.__name__
        )
    found.sort(key=lambda c: c.rank)
    for attr in ("name", "rank"):
        seen: dict[object, type[Reader]] = {}
        for cls in found:
            other = seen.setdefault(getattr(cls, attr), cls)
            if other is not cls:
                raise TypeError(f"readers {other.__module__} and {cls.__module__} have the same {attr} "
                                f"{getattr(cls, attr)!r}")
    return tuple(found)


READER_CLASSES = discover(Path(__file__).parent, __name__.rsplit(".", 1)[0])


@lru_cache(maxsize=8)
def readers(config: ReaderConfig = NO_CONFIG) -> dict[str, Reader]:
    """One reader of every format for ``config`` (by name, in detection order); cached per
    configuration object, so a run builds them once."""
    return {cls.name: cls(config) for cls in READER_CLASSES}


READERS = readers(NO_CONFIG)
FORMATS = tuple(READERS)


def tie_order(reader: Reader) -> int:
    """Where a format is listed among equally close formats."""
    return reader.rank if reader.tie_rank is None else reader.tie_rank


def catalog_order(reader: Reader) -> int:
    """Where a format is listed in ``umidata formats``."""
    return reader.rank if reader.catalog_rank is None else reader.catalog_rank
