"""The package imports cleanly and without HF transformers."""

import subprocess
import sys


def test_import_ptlearn_does_not_import_transformers():
    code = (
        "import sys, ptlearn, ptlearn.viz, ptlearn.hf, ptlearn.finetune, ptlearn.distill;"
        "bad = [m for m in ('transformers', 'bertviz', 'datasets') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_ptlearn_works_when_transformers_is_missing():
    code = (
        "import sys; sys.modules['transformers'] = None;"  # any `import transformers` now fails
        "import ptlearn, ptlearn.viz, ptlearn.hf; print(ptlearn.__version__)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
