#!/usr/bin/env python3
"""wirebench: fire one workload at every protocol and compare what the wire costs.

`python bench.py ARGS` is `wirebench ARGS` (harness.cli) for a checkout; run
`python bench.py --help` for the commands and exit codes.
"""

import sys

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
