"""The reader contract: what every input format provides, so the registry, detection, the
closest-format hint and ``umidata formats`` are derived from the readers themselves.

A format is one module of ``umi_data/readers/`` holding a :class:`Reader` subclass (its name,
detection rank, signature keys, catalog entry, ``sniff`` and ``read``; the id rule when the
default does not fit). ``umi_data.readers.registry`` finds it; nothing else needs to be edited.
Configuration given on the command line (``--dataset-info``, ``--tools``) is a
:class:`ReaderConfig` on the reader instances and on ``ReadOptions``, never a module global, so
worker processes get it with the options they are handed.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, ClassVar, NamedTuple

from umi_data.readers.tool_specs import read_tools_file
from umi_data.trajectory import Source, Tool, Trajectory
from umi_data.trajectory.findings import Finding

Episode = tuple[Trajectory | None, list[Finding]]
"""One trajectory read from a record (or ``None``), with the findings about it."""

CHAT_ID = "the record's `id`, else `<file stem>/<index or line>`; request k ≥ 2 of a chat: `<id>#k`"
"""The id rule of the chat formats, as the catalog states it."""


@dataclass(frozen=True, slots=True)
class FormatDoc:
    """A format as users see it (``umidata formats``, the README's input table)."""

    name: str
    shape: str
    example: tuple[str, str]
    mapping: str
    id: str


class Signature(NamedTuple):
    """The keys a record of the format needs for ``sniff`` (the first missing one is named in
    the closest-format hint), then those it usually has. An unrecognised record is closest to the
    format whose signature keys it has most of."""

    need: tuple[str, ...]
    usual: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class ReaderConfig:
    """Reading settings from the command line, handed to every reader (pickled with the options
    to worker processes). ``dataset_info``: the entries of a ``--dataset-info`` file (LLaMA-Factory
    ``dataset_info.json``; they apply to input files of their ``file_name``); ``tools``: the
    ``--tools`` tools, given to records that carry no tool list. Compared by identity, so readers
    built for one configuration can be cached."""

    dataset_info: Mapping[str, Any] = field(default_factory=dict)
    tools: tuple[Tool, ...] = ()

    @classmethod
    def load(
        cls, dataset_info: str | os.PathLike[str] | None = None, tools: str | os.PathLike[str] | None = None
    ) -> ReaderConfig:
        """The configuration from the two files (``None``: not given). Raises ``OSError`` or
        ``ValueError`` (the file named) for a file that cannot be used."""
        entries = read_dataset_info(dataset_info) if dataset_info is not None else {}
        return cls(entries, tuple(read_tools_file(Path(tools))) if tools is not None else ())

    def given_tools(self) -> list[Tool]:
        """Copies of the ``--tools`` tools (each trajectory owns its tools)."""
        return [Tool(t.name, t.description, json.loads(json.dumps(t.parameters))) for t in self.tools]


NO_CONFIG = ReaderConfig()


def read_dataset_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The dataset entries of a LLaMA-Factory ``dataset_info.json``. Raises ``ValueError`` when
    the file is not a JSON object."""
    from umi_data.readers.bounded_io import read_regular  # a FIFO or device there is never opened

    data = json.loads(read_regular(path, 64 << 20).decode("utf-8"))  # a dataset_info.json is KiBs
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a dataset_info.json must be a JSON object of dataset descriptions")
    return {k: v for k, v in data.items() if isinstance(v, dict)}


class Reader(ABC):
    """One input format. Class attributes: ``name`` (``--format``, ``Source.format``), ``rank``
    (detection order: records are offered to readers by rising rank, so the most specific shape
    comes first), ``signature`` (``None``: a variant never named as the closest format),
    ``doc`` (its catalog entry); optional ``tie_rank`` (its place among equally close formats)
    and ``catalog_rank`` (its place in ``umidata formats``), both its ``rank`` by default.
    A subclass that misses one is refused when it is defined."""

    name: ClassVar[str]
    rank: ClassVar[int]
    signature: ClassVar[Signature | None]
    doc: ClassVar[FormatDoc]
    tie_rank: ClassVar[int | None] = None
    catalog_rank: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        problems = contract_problems(cls)
        if problems:
            raise TypeError(f"reader {cls.__module__}.{cls.__qualname__}: {'; '.join(problems)}")

    def __init__(self, config: ReaderConfig = NO_CONFIG) -> None:
        self.config = config

    @abstractmethod
    def sniff(self, obj: Any) -> bool:
        """Whether a parsed record has this format's shape."""

    @abstractmethod
    def read(self, obj: dict[str, Any], source: Source, traj_id: str) -> list[Episode]:
        """The trajectories of one record (several for a chat of several requests), each with
        its findings; ``(None, findings)`` rejects it."""

    def traj_id(self, obj: Any, name: PurePath, index: int | None) -> str:
        """The id of a record read from the file (or archive member) ``name``, at ``index``
        (list index or JSONL line; ``None`` for a file holding one record): the record's own
        non-empty ``id``, else the file stem and position."""
        if isinstance(obj, dict) and isinstance(obj.get("id"), str) and obj["id"]:
            return obj["id"]
        return f"{name.stem}/{index}" if index is not None else name.stem

    def mismatch(self, obj: dict[str, Any]) -> str:
        """Why a record closest to this format is not read as it (the closest-format hint)."""
        assert self.signature is not None
        missing = [k for k in self.signature.need if k not in obj]
        if missing:
            return f"{self.name} (but it has no `{missing[0]}`)"
        return f"{self.name} (but its {', '.join(f'`{k}`' for k in self.signature.need)} is not what that reader reads)"


def contract_problems(cls: type) -> list[str]:
    """What a reader class misses of the contract (``[]`` when complete)."""
    problems = []
    for attr, kind in (("name", str), ("rank", int), ("doc", FormatDoc)):
        if not isinstance(getattr(cls, attr, None), kind):
            problems.append(f"`{attr}` must be a {kind.__name__}")
    sig = getattr(cls, "signature", ...)
    if sig is not None and not (isinstance(sig, Signature) and sig.need):
        problems.append("`signature` must be a Signature with at least one needed key, or None")
    for attr in ("tie_rank", "catalog_rank"):
        if not isinstance(getattr(cls, attr, None), int | None):
            problems.append(f"`{attr}` must be an int or None")
    doc = getattr(cls, "doc", None)
    if isinstance(doc, FormatDoc) and doc.name != getattr(cls, "name", None):
        problems.append(f"`doc.name` is {doc.name!r}, not the reader's name")
    missing = [m for m in ("sniff", "read")
               if not callable(fn := getattr(cls, m, None)) or getattr(fn, "__isabstractmethod__", False)]
    if missing:
        problems.append(f"no {', '.join(missing)}")
    return problems
