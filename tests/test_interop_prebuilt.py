"""The adapters' hits as framework objects built without validation (``interop.prebuilt``) are the objects
validation builds: equal, same field order, same fields set, same dumps, pickles and copies, no state shared
between instances."""

from __future__ import annotations

import copy
import pickle

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from langchain_core.documents import Document
from langchain_spann.vectorstores import _to_doc
from llama_index.core.schema import MetadataMode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.vector_stores.spann.base import _hit_to_node

from spann_vectorstore import Hit
from spann_vectorstore.interop import clean_metadata, prebuilt

ROWS = [
    ("a", "some text", {"bucket": 7}),
    ("b", None, {}),
    ("c", "", {"nested": {"x": [1, 2.5, None, True]}, "s": "\u00e9\u2028\U0001f600"}),
    ("d" * 300, "line\nbreaks\ttabs", {"k": "v", "n": -3, "f": 1e300}),
]


def same(a, b) -> None:
    assert type(a) is type(b)
    assert a == b and b == a
    assert list(a.__dict__) == list(b.__dict__)
    assert a.model_fields_set == b.model_fields_set
    assert a.__pydantic_extra__ == b.__pydantic_extra__ and a.__pydantic_private__ == b.__pydantic_private__
    assert repr(a) == repr(b) and str(a) == str(b)
    assert a.model_dump() == b.model_dump() and a.model_dump_json() == b.model_dump_json()
    assert a.model_dump(exclude_unset=True) == b.model_dump(exclude_unset=True)
    assert pickle.loads(pickle.dumps(b)) == a
    assert copy.deepcopy(b) == a and b.model_copy() == a


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r[0][:4])
def test_langchain_documents_equal_validated_ones(row):
    id_, text, meta = row
    fast = _to_doc(Hit(id=id_, score=0.5, text=text, metadata=dict(meta)))
    same(Document(id=id_, page_content=text or "", metadata=clean_metadata(dict(meta))), fast)
    other = _to_doc(Hit(id=id_, score=0.5, text=text, metadata=dict(meta)))
    other.metadata["added"] = 1  # no state shared between two documents
    other.page_content = "changed"
    assert "added" not in fast.metadata and fast.page_content == (text or "")
    assert fast.model_fields_set == {"id", "page_content", "metadata"}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r[0][:4])
def test_llama_index_nodes_equal_validated_ones(row):
    id_, text, meta = row
    fast = _hit_to_node(Hit(id=id_, score=0.5, text=text, metadata=dict(meta)))
    source = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=id_)}
    valid = TextNode(id_=id_, text=text or "", metadata=dict(meta), relationships=source)
    same(valid, fast)
    same(valid.relationships[NodeRelationship.SOURCE], fast.relationships[NodeRelationship.SOURCE])
    assert fast.hash == valid.hash and fast.node_id == valid.node_id == id_ and fast.ref_doc_id == id_
    assert fast.to_json() == valid.to_json() and fast.to_dict() == valid.to_dict()
    for mode in MetadataMode:
        assert fast.get_content(mode) == valid.get_content(mode)
    assert TextNode.from_json(fast.to_json()) == valid
    other = _hit_to_node(Hit(id=id_, score=0.5, text=text, metadata=dict(meta)))
    other.excluded_embed_metadata_keys.append("bucket")  # mutable defaults are per node
    other.excluded_llm_metadata_keys.append("bucket")
    other.relationships[NodeRelationship.SOURCE].metadata["x"] = 1
    other.metadata["added"] = 1
    other.embedding = [0.5, 0.25]
    assert fast.excluded_embed_metadata_keys == [] and fast.excluded_llm_metadata_keys == []
    assert fast.relationships[NodeRelationship.SOURCE].metadata == {} and "added" not in fast.metadata
    assert fast.embedding is None and _hit_to_node(Hit(id="z", score=None, text="t")).excluded_llm_metadata_keys == []


def test_prebuilt_validates_calls_it_was_not_made_for():
    make = prebuilt(Document, id="", page_content="", metadata={})
    with pytest.raises(TypeError):  # other keys: the class itself is called (here: page_content missing)
        make(id="x", metadata={})
    assert make(page_content="p", metadata={"a": 1}, id="x") == Document(id="x", page_content="p", metadata={"a": 1})
    assert make(id="x", page_content="p", metadata={}, type="Document").model_fields_set == {
        "id",
        "page_content",
        "metadata",
        "type",
    }
