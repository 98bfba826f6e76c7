"""The adapters' hits as framework objects built without validation (``interop.prebuilt``) are the objects
validation builds: equal, same field order, same fields set, same dumps, pickles and copies, no state shared
between instances."""

from __future__ import annotations

import copy
import json
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


# ----------------------------------------------------------------------------------------------------------
# rows written through LlamaIndex ("node rows"): built from their JSON without validation when they have the
# common shape, else by llama-index's own metadata_dict_to_node; either way the node it would build
# ----------------------------------------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.schema import Document as LlamaDocument  # noqa: E402
from llama_index.core.schema import IndexNode, ObjectType  # noqa: E402
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict  # noqa: E402
from llama_index.vector_stores.spann.base import _stored_text_node  # noqa: E402


def _row_of(node, text=None):
    meta = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
    return Hit(id=node.node_id, score=0.5, text=node.get_content() if text is None else text, metadata=meta)


def _same_node(valid, fast):
    same(valid, fast)
    assert valid.relationships.keys() == fast.relationships.keys()
    for kind, rel in valid.relationships.items():
        got = fast.relationships[kind]
        for a, b in zip(rel, got, strict=True) if isinstance(rel, list) else [(rel, got)]:
            same(a, b)
    assert fast.hash == valid.hash and fast.ref_doc_id == valid.ref_doc_id and fast.node_id == valid.node_id
    for mode in MetadataMode:
        assert fast.get_content(mode) == valid.get_content(mode)


def _split_nodes():
    doc = LlamaDocument(text="First sentence here. " * 120, metadata={"source": "a.md", "n": 3}, id_="doc-1")
    return SentenceSplitter(chunk_size=64, chunk_overlap=8).get_nodes_from_documents([doc])


def test_node_rows_of_a_split_document_equal_llama_indexs_nodes():
    nodes = _split_nodes()
    assert len(nodes) >= 3
    for node in nodes:
        hit = _row_of(node)
        content = hit.metadata["_node_content"]
        fast = _stored_text_node(hit.metadata, hit.text)
        assert fast is not None  # the common shape: SOURCE / PREVIOUS / NEXT relations with types and hashes
        _same_node(metadata_dict_to_node(dict(hit.metadata), text=hit.text), fast)
        _same_node(metadata_dict_to_node(dict(hit.metadata), text=hit.text), _hit_to_node(hit))
        assert hit.metadata["_node_content"] == content  # the row's metadata is left as it was
        assert fast.ref_doc_id == "doc-1" and fast.text == node.text
        other = _stored_text_node(hit.metadata, hit.text)
        other.relationships[NodeRelationship.SOURCE].metadata["x"] = 1  # nothing shared between two nodes
        other.excluded_llm_metadata_keys.append("n")
        assert "x" not in fast.relationships[NodeRelationship.SOURCE].metadata
        assert "n" not in fast.excluded_llm_metadata_keys


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(
    meta=st.dictionaries(st.text(min_size=1, max_size=6), _json_values, max_size=4),
    text=st.text(max_size=30),
    excluded=st.lists(st.text(max_size=5), max_size=3),
    span=st.one_of(st.none(), st.tuples(st.integers(0, 10**6), st.integers(0, 10**6))),
    rel_type=st.sampled_from([None, ObjectType.DOCUMENT, ObjectType.TEXT, "custom"]),
    digest=st.one_of(st.none(), st.text(max_size=10)),
)
def test_node_rows_equal_llama_indexs_nodes_for_any_metadata(meta, text, excluded, span, rel_type, digest):
    rel = RelatedNodeInfo(node_id="src", node_type=rel_type, metadata=dict(meta), hash=digest)
    node = TextNode(
        id_="n1",
        text=text,
        metadata=meta,
        excluded_embed_metadata_keys=list(excluded),
        excluded_llm_metadata_keys=list(excluded[:1]),
        relationships={NodeRelationship.SOURCE: rel, NodeRelationship.PARENT: RelatedNodeInfo(node_id="p")},
        start_char_idx=None if span is None else span[0],
        end_char_idx=None if span is None else span[1],
        metadata_template="{key}={value}",
        text_template="{content}",
    )
    hit = _row_of(node, text=text)
    want = metadata_dict_to_node(dict(hit.metadata), text=hit.text)
    fast = _stored_text_node(hit.metadata, hit.text)
    assert fast is not None
    _same_node(want, fast)


def test_other_node_rows_go_to_llama_index():
    plain = _split_nodes()[1]
    cases = [
        IndexNode(id_="i", text="t", index_id="elsewhere"),  # another node class
        TextNode(  # a relation with a list of nodes (CHILD)
            id_="c", text="t", relationships={NodeRelationship.CHILD: [RelatedNodeInfo(node_id="x")]}
        ),
    ]
    for node in cases:
        hit = _row_of(node)
        assert _stored_text_node(hit.metadata, hit.text) is None
        _same_node(metadata_dict_to_node(dict(hit.metadata), text=hit.text), _hit_to_node(hit))
    hit = _row_of(plain)
    content = json.loads(hit.metadata["_node_content"])
    variants = {
        "embedding kept": {**content, "embedding": [0.5, 0.25]},
        "a float offset": {**content, "start_char_idx": 3.0},
        "a field of another version": {**content, "new_field": 1},
        "a field missing": {k: v for k, v in content.items() if k != "mimetype"},
        "fields in another order": dict(reversed(list(content.items()))),
        "a relation of another kind": {**content, "relationships": {"9": content["relationships"]["1"]}},
    }
    for name, variant in variants.items():
        meta = {**hit.metadata, "_node_content": json.dumps(variant)}
        assert _stored_text_node(meta, hit.text) is None, name
        try:
            want = metadata_dict_to_node(dict(meta), text=hit.text)
        except Exception as exc:  # whatever llama-index raises, the store raises the same
            with pytest.raises(type(exc)):
                _hit_to_node(Hit(id=hit.id, score=0.5, text=hit.text, metadata=meta))
        else:
            _same_node(want, _hit_to_node(Hit(id=hit.id, score=0.5, text=hit.text, metadata=meta)))
    damaged = {**hit.metadata, "_node_content": hit.metadata["_node_content"][:-5]}
    assert _stored_text_node(damaged, hit.text) is None
    with pytest.raises(ValueError):
        _hit_to_node(Hit(id=hit.id, score=0.5, text=hit.text, metadata=damaged))
