"""docs/protocol.md's field reference is the declarations: a field added to a message without
the doc following fails here (``python -m workers.protocol_doc --write`` mends it)."""

from __future__ import annotations

from workers import protocol as P
from workers import protocol_doc


def test_the_field_reference_in_docs_protocol_md_is_generated_from_the_declarations():
    block = protocol_doc.current_block(protocol_doc.DOC.read_text())
    assert block is not None, "docs/protocol.md has no field reference; run python -m workers.protocol_doc --write"
    assert block == protocol_doc.render(), "docs/protocol.md is out of date; run python -m workers.protocol_doc --write"


def test_every_declared_message_is_in_the_reference():
    documented = {cls for _, classes in protocol_doc.SECTIONS for cls in classes}
    assert set(P._REGISTRY.values()) == documented
