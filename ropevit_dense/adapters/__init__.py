"""Framework adapters. Each is imported explicitly and registers into its own framework's registries:

* ``ropevit_dense.adapters.mmdet`` — mmdet (configs: ``custom_imports=dict(imports=['ropevit_dense.adapters.mmdet'])``)
* ``ropevit_dense.adapters.mmseg`` — mmseg

Importing this package itself imports no framework.
"""
