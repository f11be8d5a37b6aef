"""``python -m ropevit_dense.data coco|ade20k ROOT``: write a tiny dataset (see :mod:`.synthetic`).

``python -m ropevit_dense.data check DATASET``: list the problems of a dataset (see :mod:`.check`).
"""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "check":
    from .check import main as check_main

    sys.exit(check_main(sys.argv[2:]))

from .synthetic import main  # noqa: E402

sys.exit(main())
