"""Test a checkpoint of an mmdet or mmseg config: mmdet's / mmseg's own ``tools/test.py`` (chosen by the config's
``default_scope``), also in several processes on machines without a GPU.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--tta] [--cfg-options k=v ...] [--launcher pytorch]
    tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [options]

Options are those of the framework's script. See docs/distributed.md.
"""

from ropevit_dense.adapters.dist import run_tool

if __name__ == "__main__":
    run_tool("test")
