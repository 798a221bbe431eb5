"""Editing ONNX graphs: swapping in rewritten nodes and weights, and writing an edited graph
over the file it came from."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

CONTRIB_DOMAIN = "com.microsoft"  # ONNX Runtime's own kernels (MatMulNBits, GQA, …)


def replace_nodes(model: Any, nodes: list[Any], replaced: set[str], added: list[Any]) -> None:
    """Make ``nodes`` the main graph's nodes, in place: the initializers named in ``replaced``
    go (unless a node still reads one: a shared or tied weight stays), ``added`` join, and the
    contrib domain is declared for the kernels that live there."""
    from onnx import helper

    graph = model.graph
    still_read = {name for node in nodes for name in node.input}
    kept = [
        init for init in graph.initializer if init.name not in replaced or init.name in still_read
    ]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    if not any(opset.domain == CONTRIB_DOMAIN for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid(CONTRIB_DOMAIN, 1))


def save_atomically(model: Any, model_file: Path) -> None:
    """Replace ``model_file`` with ``model`` atomically: a worker loading it meanwhile reads
    the old graph or the new one, never half of one. External weights stay where they are
    (load the graph with ``load_external_data=False``): the file is written beside its
    ``*_data`` file, so the references stay valid."""
    import onnx

    handle, partial = tempfile.mkstemp(prefix=model_file.name + ".", dir=model_file.parent)
    os.close(handle)
    try:
        onnx.save_model(model, partial)
        os.chmod(partial, 0o644)  # mkstemp's private mode would outlive the rename
        os.replace(partial, model_file)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
