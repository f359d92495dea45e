"""What ``umidata convert --to`` can write: one small contract per output format (name, the
output suffixes it writes, whether it folds multi-request chats, ``write``) and the registry the
command's choices come from. An output format is a subclass of :class:`OutputFormat`; defining it
registers it (in definition order, the order ``--to`` lists them). The record-level rules of the
chat exports (whole chats, ShareGPT's alternation) are :mod:`umi_data.export.formats`'."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

from umi_data.export.formats import whole_chats, write_export
from umi_data.output.writers import write_json_list, write_jsonl, write_trajectories_parquet
from umi_data.render import alpha_umi
from umi_data.trajectory import Trajectory

# Output suffix → what is written there (a reader of that suffix reads it back).
OUTPUT_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}
Accepted = Iterable[tuple[Trajectory, bytes]]
"""The accepted trajectories, each with its canonical JSON (what ``convert`` already serialised)."""

OUTPUTS: dict[str, OutputFormat] = {}


class OutputFormat(ABC):
    """One ``--to`` format. ``name``; ``suffixes``: the output names it writes (lower case; any
    other is refused before anything is read); ``whole_chats``: it writes a multi-request chat
    once, whole, so ``convert`` cuts a chat before its first rejected request."""

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    whole_chats: ClassVar[bool] = True

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        """Check and register a format (``register=False``: a base for several formats)."""
        super().__init_subclass__(**kwargs)
        if not register:
            return
        if not isinstance(getattr(cls, "name", None), str) or not isinstance(getattr(cls, "suffixes", None), tuple):
            raise TypeError(f"output format {cls.__qualname__}: needs a `name` and its `suffixes`")
        if not set(cls.suffixes) <= set(OUTPUT_KINDS):
            raise TypeError(f"output format {cls.__qualname__}: suffixes must be among {', '.join(OUTPUT_KINDS)}")
        if getattr(cls.write, "__isabstractmethod__", False):
            raise TypeError(f"output format {cls.__qualname__}: no `write`")
        if cls.name in OUTPUTS:
            raise TypeError(f"output format {cls.__qualname__}: the name {cls.name!r} is taken")
        OUTPUTS[cls.name] = cls()

    def refusal(self, out: str) -> str:
        """Why ``out`` is not a name this format writes."""
        return f"--to {self.name} writes {', '.join(self.suffixes)} files, not {out}"

    @abstractmethod
    def write(self, out: str, accepted: Accepted) -> None:
        """Write every accepted trajectory to ``out`` (atomically: all or nothing)."""


def suffix(out: str | os.PathLike[str]) -> str:
    return os.path.splitext(os.fspath(out))[1].lower()


def alpha_umi_item(t: Trajectory) -> dict[str, Any]:
    """A trajectory as an α-UMi stage-2 record (history turns first: α-UMi has no history mark, so
    each multi-request chat is passed once, folded into its last request: :func:`whole_chats`)."""
    return {
        "tools": alpha_umi.tool_docs(t.tools),
        "instruction": t.instruction,
        "conversations": alpha_umi.conversation(t.history + t.turns),
    }


class UmiOutput(OutputFormat):
    """Canonical trajectories: JSONL, a JSON array (``.json``) or Parquet, by the output's suffix."""

    name = "umi"
    suffixes = (".jsonl", ".ndjson", ".json", ".parquet")
    whole_chats = False

    def refusal(self, out: str) -> str:
        return (f"cannot tell what to write from the name {out}: use .jsonl (one trajectory per line), "
                ".json (a JSON array) or .parquet")

    def write(self, out: str, accepted: Accepted) -> None:
        kind = OUTPUT_KINDS[suffix(out)]
        if kind == "parquet":
            write_trajectories_parquet(out, (t for t, _ in accepted))
        elif kind == "json":
            write_json_list(out, (b for _, b in accepted))
        else:
            write_jsonl(out, (b for _, b in accepted))


class AlphaUmiOutput(OutputFormat):
    """α-UMi stage-2 records, one per chat, as a JSON list."""

    name = "alpha-umi"
    suffixes = (".json",)

    def refusal(self, out: str) -> str:
        return f"--to alpha-umi writes a JSON list: name the output *.json, not {out}"

    def write(self, out: str, accepted: Accepted) -> None:
        write_json_list(out, (alpha_umi_item(t) for _, t in whole_chats(t for t, _ in accepted)), indent=2)


class _ChatExport(OutputFormat, register=False):
    """The chat exports of :mod:`umi_data.export.formats`: JSONL, or a JSON list for ``.json``."""

    suffixes = (".jsonl", ".ndjson", ".json")

    def refusal(self, out: str) -> str:
        return f"--to {self.name} writes JSONL (or a JSON list for .json): name the output *.jsonl or *.json"

    def write(self, out: str, accepted: Accepted) -> None:
        write_export(out, self.name, (t for t, _ in accepted))  # type: ignore[arg-type]


class OpenAIOutput(_ChatExport):
    name = "openai"


class ShareGPTOutput(_ChatExport):
    name = "sharegpt"
