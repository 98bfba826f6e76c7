"""One directory, both frameworks: how LangChain and LlamaIndex documents share a collection.

A collection row is ``id``, ``text``, ``vector`` and a metadata dict. The format is neutral:

* The user's metadata is top-level in every row, whichever framework wrote it, so a filter on ``source``
  means the same from LangChain, LlamaIndex and the core.
* A row written through LlamaIndex also carries the five keys llama-index's own Chroma/Qdrant stores write
  (:data:`LLAMA_INDEX_KEYS`: ``_node_content``, the node without its text as JSON, ``_node_type``, and its
  reference document id under ``ref_doc_id``, ``doc_id`` and ``document_id``). ``_node_content`` marks such
  a row ("a node row"); a row without it is a plain document (written through LangChain or the core).
* LangChain sees clean metadata: :func:`clean_metadata` drops the five keys of a node row (keeping a user
  key of the same name from the node's own metadata). ``Document.id`` is the row id (the node id).
* LlamaIndex reads a plain row as a ``TextNode`` whose ``node_id`` is the row id and whose ``ref_doc_id``
  is that same id (each plain document is its own source document), so ``delete_ref_doc(id)`` and
  ``doc_ids=[id]`` reach it: :func:`ref_doc_filter` matches node rows by ``ref_doc_id`` and plain rows by id.
* A LangChain write that replaces a node row (same id) keeps its node identity (:func:`carry_over`): the
  reference document, node type and relationships stay, the text and user metadata are the new ones.

Stores written before this module existed have exactly this layout (both adapters already wrote it), so they
need no migration.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

#: What LlamaIndex stores beside the user's metadata (``node_to_metadata_dict``).
LLAMA_INDEX_KEYS = ("_node_content", "_node_type", "document_id", "doc_id", "ref_doc_id")
_REF_KEYS = ("document_id", "doc_id", "ref_doc_id")
NODE_MARK = "_node_content"


def is_node_row(metadata: dict[str, Any]) -> bool:
    """Whether ``metadata`` is that of a row written through LlamaIndex."""
    return isinstance(metadata.get(NODE_MARK), str)


def _node_json(metadata: dict[str, Any]) -> dict[str, Any] | None:
    try:
        node = json.loads(metadata[NODE_MARK])
    except (TypeError, ValueError, KeyError):
        return None
    return node if isinstance(node, dict) else None


def clean_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The user's metadata of a row: a node row without LlamaIndex's five keys (a user key of one of those
    names, which LlamaIndex overwrites at the top level, comes back from the node's own metadata); a plain
    row's metadata as it is."""
    if not is_node_row(metadata):
        return metadata
    out = {k: v for k, v in metadata.items() if k not in LLAMA_INDEX_KEYS}
    content = metadata[NODE_MARK]
    if "doc_id" in content or "document_id" in content:  # cheap test before parsing the node JSON
        node = _node_json(metadata)
        inner = node.get("metadata") if node else None
        if isinstance(inner, dict):
            out.update({k: inner[k] for k in _REF_KEYS if k in inner})
    return out


def ref_doc_filter(ref_doc_ids: Sequence[str]) -> dict[str, Any]:
    """A core filter for the rows of these reference documents: node rows by their ``ref_doc_id``, plain
    rows by their own id."""
    ids = list(ref_doc_ids)
    return {
        "$or": [
            {"$and": [{NODE_MARK: {"$exists": True}}, {"ref_doc_id": {"$in": ids}}]},
            {"$and": [{NODE_MARK: {"$exists": False}}, {"$id": {"$in": ids}}]},
        ]
    }


def carry_over(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Metadata for replacing a row whose metadata was ``old`` with user metadata ``new``: ``new`` as it is
    for a plain row; for a node row, ``new`` plus the node's identity (its JSON with ``new`` as the node's
    metadata, its type and reference document)."""
    if not is_node_row(old):
        return new
    node = _node_json(old)
    if node is None:
        return new
    node["metadata"] = dict(new)
    out = dict(new)
    out[NODE_MARK] = json.dumps(node)
    for key in ("_node_type", *_REF_KEYS):
        if key in old:
            out[key] = old[key]
    return out


# ----------------------------------------------------------------------------------------------------------
# framework objects for rows, built without validation
# ----------------------------------------------------------------------------------------------------------
# Validating a pydantic model (LangChain's ``Document``, LlamaIndex's ``TextNode``) costs 3-5 us, and a search
# returns ten: as much as the SQLite fetch of the hits. ``model_construct`` costs about as much for ``Document``
# and 100x more for ``TextNode``. :func:`prebuilt` validates one sample instance, then builds each instance as
# ``model_construct`` does (the field dict, the set of fields given, no extra or private state: the same four
# slots, set through their descriptors) from the
# sample's field dict with the given values in place: the same fields in the same order, defaults included,
# mutable defaults copied per instance. Only for values that already have the types validation produces (str
# ids and texts, dict metadata); the adapters' tests compare each kind with the validated instance (equality,
# field order, fields set, dumps). Nothing here imports pydantic.
_new = object.__new__


def _setter(cls: type, name: str) -> Any:
    """The ``__set__`` of slot ``name`` of ``cls`` (``object.__setattr__`` goes through the class's own
    ``__setattr__`` check and was 4x slower, with a wide spread, on pydantic models)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name].__set__
    raise AttributeError(f"{cls.__name__} has no slot {name!r}")


def prebuilt(cls: type, **sample: Any) -> Any:
    """A function building instances of pydantic model ``cls`` from keyword values with the keys of ``sample``
    (keyword arguments of one instance, validated here once) without validating them; other keys, or a model
    keeping extra or private state per instance, are passed to ``cls`` itself (validated). ``make.adopt(fields)``
    builds one around a dict holding every field of the model in its order (the caller's, not copied), with
    the fields set of ``sample``."""
    ref = cls(**sample)
    keys = frozenset(sample)
    template = dict(ref.__dict__)
    mutable = tuple(k for k, v in template.items() if k not in sample and isinstance(v, (list, dict, set)))
    fields_set = frozenset(ref.__pydantic_fields_set__)
    names = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
    set_dict, set_fields, set_extra, set_private = (_setter(cls, n) for n in names)
    if ref.__pydantic_extra__ is not None or ref.__pydantic_private__ is not None or fields_set != keys:
        return cls

    def make(**values: Any) -> Any:
        if values.keys() != keys:
            return cls(**values)
        obj = _new(cls)
        fields = template.copy()
        fields.update(values)  # the keys are the template's: their order stays the fields' order
        for k in mutable:
            fields[k] = fields[k].copy()
        set_fields(obj, set(fields_set))
        set_extra(obj, None)
        set_private(obj, None)
        set_dict(obj, fields)  # last: set before the slots, it made an instance 2-4x slower to build
        return obj

    order = list(template)

    def adopt(fields: dict[str, Any]) -> Any:
        """An instance whose field dict is ``fields`` itself (the caller's, not copied): it must hold every field
        in the model's order with values of the validated types (as decoded from the model's own JSON); None
        when its keys are not exactly those, in that order."""
        if list(fields) != order:
            return None
        obj = _new(cls)
        set_fields(obj, set(fields_set))
        set_extra(obj, None)
        set_private(obj, None)
        set_dict(obj, fields)
        return obj

    make.adopt = adopt  # type: ignore[attr-defined]
    return make


# ----------------------------------------------------------------------------------------------------------
# stored JSON
# ----------------------------------------------------------------------------------------------------------
_scan_json = json.JSONDecoder().scan_once  # the C scanner: json.loads less its two regex passes (1.4 -> 0.4 us)


def decode_json(text: str) -> Any:
    """``json.loads(text)`` for JSON the store wrote (compact, from ``json.dumps``: a row's metadata, a node's
    ``_node_content``), faster; anything else (whitespace around it, bytes, damage) goes to ``json.loads``,
    which decides (and raises as it does)."""
    try:
        obj, end = _scan_json(text, 0)
    except (StopIteration, TypeError):
        return json.loads(text)
    return obj if end == len(text) else json.loads(text)


# ----------------------------------------------------------------------------------------------------------
# query embeddings
# ----------------------------------------------------------------------------------------------------------
_PACKERS: dict[int, struct.Struct] = {}


def float_list(values: Any) -> np.ndarray | None:
    """A list of Python numbers (what embedding models return to both frameworks) as a writable (n,) float32
    array, or None for anything else (the caller's general path decides: other types, numbers out of float32
    range, non-numbers). ``struct`` packs a list ~3x faster than ``np.asarray(values, dtype=np.float32)``
    (2.4 vs 6.8 us for 384 floats), with the same rounding (IEEE round to nearest)."""
    if type(values) is not list or not values:
        return None
    n = len(values)
    packer = _PACKERS.get(n)
    if packer is None:
        packer = struct.Struct(f"{n}f")
        if len(_PACKERS) < 64:
            _PACKERS[n] = packer
    try:
        packed = bytearray(packer.pack(*values))  # a bytearray: a writable array (the kernels' array type)
    except (struct.error, OverflowError, TypeError):
        return None
    return np.frombuffer(packed, dtype=np.float32)


__all__ = [
    "LLAMA_INDEX_KEYS",
    "carry_over",
    "clean_metadata",
    "decode_json",
    "float_list",
    "is_node_row",
    "prebuilt",
    "ref_doc_filter",
]
