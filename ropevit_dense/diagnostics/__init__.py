"""Checks that run whole models: config sweeps (every parameter trained, bf16 against fp32) and the GPU acceptance
check behind ``tools/gpu_check.py``.

Importing this package imports no framework; :mod:`.mm_models` needs mmengine and mmdet / mmseg, and is imported
explicitly.
"""
