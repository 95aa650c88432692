"""Train tests/helpers_train.py's tiny run; killed and resumed by tests/test_training.py.

Usage: python train_tiny.py OUT_DIR [--resume] [--slow]   (--slow sleeps 50 ms per step so the
test can kill the process mid-run)
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers_train import train_tiny  # noqa: E402

from ptlearn.training import Callback  # noqa: E402


class Sleep(Callback):
    def on_step_end(self, trainer, step, logs):
        time.sleep(0.05)


if __name__ == "__main__":
    torch.set_num_threads(1)
    train_tiny(
        Path(sys.argv[1]),
        resume="--resume" in sys.argv,
        on_step=Sleep() if "--slow" in sys.argv else None,
    )
