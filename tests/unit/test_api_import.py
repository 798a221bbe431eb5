import subprocess
import sys


def test_the_api_never_imports_torch_or_onnxruntime() -> None:
    probe = (
        "import sys; import services.api.app, services.api.wsgi; "
        "heavy = sorted(m for m in ('torch', 'onnxruntime', 'transformers', 'optimum') "
        "if m in sys.modules); print(','.join(heavy))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == ""
