"""Train an mmdet or mmseg config: mmdet's / mmseg's own ``tools/train.py`` (chosen by the config's
``default_scope``), also in several processes on machines without a GPU.

    python tools/train.py CONFIG [--work-dir DIR] [--resume] [--amp] [--cfg-options k=v ...] [--launcher pytorch]
    tools/dist_train.sh CONFIG NUM_PROCESSES [options]        # torchrun, one process per GPU (or CPU process)

Options are those of the framework's script. See docs/distributed.md and
:mod:`ropevit_dense.adapters.dist` for what changes without a GPU.
"""

from ropevit_dense.adapters.dist import run_tool

if __name__ == "__main__":
    run_tool("train")
