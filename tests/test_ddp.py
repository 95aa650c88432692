"""DDP: two CPU processes under torchrun (gloo) train exactly like one process on the same batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from helpers_train import ddp_run, one_thread, params  # noqa: F401  (autouse fixture)

from ptlearn.checkpoint import load_checkpoint

SCRIPT = Path(__file__).parent / "scripts" / "train_ddp.py"


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    subprocess.run([*cmd, str(SCRIPT), str(out)], env=env, check=True, timeout=120)
    return out, torch.load(out / "results.pt", weights_only=True)


@pytest.mark.skipif(not dist.is_available(), reason="torch built without torch.distributed")
@pytest.mark.parametrize("kind", ["dataset", "batch_fn"])
def test_two_ranks_match_one_process_with_the_same_global_batch(ddp_results, kind):
    out, results = ddp_results
    assert results["world_size"] == 2
    model, metrics = ddp_run(kind, distributed=False)
    reference = params(model)
    for k, v in results[kind]["params"].items():
        torch.testing.assert_close(v, reference[k], atol=1e-5, rtol=0, msg=f"{k} differs")
    for k, v in results[kind]["eval"].items():  # eval loss and accuracy averaged over ranks
        assert v == pytest.approx(metrics[k], abs=1e-5), k
    written = load_checkpoint(out / kind)  # rank 0 wrote one checkpoint, complete
    assert written["meta"]["step"] == 8
    assert sorted(os.listdir(out / kind)) == ["checkpoint"]
