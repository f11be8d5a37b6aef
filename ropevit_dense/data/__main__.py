"""``python -m ropevit_dense.data coco|ade20k ROOT``: write a tiny dataset (see :mod:`.synthetic`)."""

import sys

from .synthetic import main

sys.exit(main())
