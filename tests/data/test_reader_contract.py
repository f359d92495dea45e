"""The reader contract: every registered input format keeps it, the registry, the closest-format
signatures and the catalog come from the readers, and reading settings live on the options."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from umi_data.readers import (
    _SHAPES,
    FORMATS,
    READER_CLASSES,
    READERS,
    FormatDoc,
    Reader,
    ReaderConfig,
    ReadOptions,
    Signature,
    catalog,
    read_inputs,
)
from umi_data.readers.base import contract_problems
from umi_data.readers.registry import discover
from umi_data.trajectory import Source

DOC = FormatDoc("probe", "a probe", ("{}", "{}"), "nothing", "its own")


def _members() -> dict[str, Any]:
    return {"name": "probe", "rank": 999, "signature": Signature(("probe",)), "doc": DOC,
            "sniff": lambda self, obj: False, "read": lambda self, obj, source, traj_id: []}


@pytest.mark.parametrize("cls", READER_CLASSES, ids=lambda c: c.name)
def test_every_registered_reader_keeps_the_contract(cls: type[Reader]) -> None:
    assert contract_problems(cls) == []
    reader = READERS[cls.name]
    assert isinstance(reader, cls) and reader.doc.name == cls.name
    # one return type for every reader: a list of (trajectory or None, findings)
    out = reader.read({}, Source(cls.name, "x.json"), "x")
    assert isinstance(out, list) and out and all(isinstance(e, tuple) and len(e) == 2 for e in out)
    assert all(t is None and f and f[0].code == "schema" for t, f in out)


@pytest.mark.parametrize("member", sorted(_members()))
def test_a_reader_missing_a_member_is_refused_when_defined(member: str) -> None:
    members = _members()
    del members[member]
    with pytest.raises(TypeError, match=member):
        type("Incomplete", (Reader,), members)
    type("Complete", (Reader,), _members())  # the same class with every member is fine


def test_a_doc_for_another_format_is_refused() -> None:
    with pytest.raises(TypeError, match=r"doc\.name"):
        type("Mislabelled", (Reader,), {**_members(), "name": "other"})


def test_registry_table_and_signatures_come_from_the_readers() -> None:
    assert tuple(c.name for c in sorted(READER_CLASSES, key=lambda c: c.rank)) == FORMATS
    assert {d.name for d in catalog.CATALOG} == set(FORMATS)
    assert {c.name: c.signature for c in READER_CLASSES if c.signature is not None} == _SHAPES
    assert FORMATS[0] == "umi" and catalog.CATALOG[-1].name == "umi"  # detected first, listed last


def _package(tmp_path: Path, name: str, modules: dict[str, str]) -> Path:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for mod, body in modules.items():
        (pkg / f"{mod}.py").write_text(body)
    return pkg


READER_MODULE = '''
from umi_data.readers.base import FormatDoc, Reader, Signature

class {cls}(Reader):
    name = "{name}"
    rank = {rank}
    signature = Signature(("k",))
    doc = FormatDoc("{name}", "s", ("a", "b"), "m", "i")

    def sniff(self, obj):
        return "k" in obj

    def read(self, obj, source, traj_id):
        return []
'''


def test_adding_a_format_is_adding_its_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        pkg = _package(tmp_path, "fmtpkg_a", {
            "second": READER_MODULE.format(cls="Second", name="second", rank=2),
            "first": READER_MODULE.format(cls="First", name="first", rank=1),
            "helpers": "from fmtpkg_a.first import First  # imported, not defined here: not registered twice\n",
        })
        assert [c.name for c in discover(pkg, "fmtpkg_a")] == ["first", "second"]
        clash = _package(tmp_path, "fmtpkg_b", {
            "one": READER_MODULE.format(cls="One", name="same", rank=1),
            "two": READER_MODULE.format(cls="Two", name="same", rank=2),
        })
        with pytest.raises(TypeError, match="same name"):
            discover(clash, "fmtpkg_b")
    finally:
        for name in [m for m in sys.modules if m.startswith(("fmtpkg_a", "fmtpkg_b"))]:
            del sys.modules[name]


def test_the_toolbench_id_rule_is_the_toolbench_readers() -> None:
    toolbench, openai = READERS["toolbench"], READERS["openai"]
    tooleval = PurePosixPath("data/chatgpt_cot/G1_instruction/10_x.json")
    assert toolbench.traj_id({"id": "ignored"}, tooleval, None) == "chatgpt_cot/G1_instruction/10_x"
    assert toolbench.traj_id(None, PurePosixPath("G2_answer/7_y.json"), None) == "G2_answer/7_y"
    assert openai.traj_id({"id": "c1"}, tooleval, 3) == "c1"
    assert openai.traj_id({"id": ""}, tooleval, 3) == "10_x/3"


def _custom_sharegpt(tmp_path: Path) -> tuple[Path, Path]:
    call = json.dumps({"name": "local_time", "arguments": {"city": "Oslo"}})
    rec = {"dialog": [{"role": "me", "content": "Time in Oslo?"}, {"role": "call", "content": call}]}
    data = tmp_path / "data" / "d.jsonl"
    data.parent.mkdir()
    data.write_text(json.dumps(rec) + "\n")
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"d": {"file_name": "d.jsonl", "columns": {"messages": "dialog"},
                                      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "me",
                                               "function_tag": "call"}}}))
    return data, info


def test_reading_settings_are_on_the_options_not_in_the_process(tmp_path: Path) -> None:
    """Two configurations in one process do not leak into each other (they were module globals)."""
    data, info = _custom_sharegpt(tmp_path)
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"name": "local_time", "description": "d", "parameters": {"city": {"type": "str"}}}]))
    configured = ReadOptions(config=ReaderConfig.load(dataset_info=info, tools=tools))
    plain = ReadOptions()
    for _ in range(2):
        (rec,) = read_inputs([data], opts=configured)
        assert rec.accepted and rec.source.format == "sharegpt"
        assert [t.name for t in rec.trajectory.tools] == ["local_time"]  # type: ignore[union-attr]
        (rec,) = read_inputs([data], opts=plain)
        assert not rec.accepted and rec.findings[0].code == "unknown_format"
    again = pickle.loads(pickle.dumps(configured))  # as a worker process receives it
    (rec,) = read_inputs([data], opts=again)
    assert rec.accepted and [t.name for t in rec.trajectory.tools] == ["local_time"]  # type: ignore[union-attr]


def test_given_tools_are_copies() -> None:
    assert ReaderConfig().given_tools() == []
    from umi_data.trajectory import Tool

    config = ReaderConfig(tools=(Tool("f", "d", {"type": "object", "properties": {}}),))
    a, b = config.given_tools()[0], config.given_tools()[0]
    a.parameters["properties"]["x"] = {}
    assert b.parameters == {"type": "object", "properties": {}} and config.tools[0].parameters["properties"] == {}


def test_tied_formats_keep_their_listing_order() -> None:
    """Ties are listed by ``tie_rank`` (not detection order: hermes is tried before sharegpt but
    listed after it), as they were before the signatures moved onto the readers."""
    from umi_data.readers import closest_formats

    assert closest_formats({"conversations": 1, "tools": 1}) == (["alpha-umi", "sharegpt", "hermes"], 2)
    assert closest_formats({"conversations": 1})[0] == ["alpha-umi", "toolllama", "sharegpt", "hermes", "toolace"]
