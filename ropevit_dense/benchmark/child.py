"""``python -m ropevit_dense.benchmark.child '<row spec as JSON>'``: the peak memory of one row, printed as JSON."""

import json
import sys

from .measure import peak_memory

if __name__ == "__main__":
    sys.stdout.write(json.dumps(peak_memory(json.loads(sys.argv[1]))) + "\n")
