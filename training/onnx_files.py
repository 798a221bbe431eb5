"""Writing an edited ONNX graph over the file it came from."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


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
