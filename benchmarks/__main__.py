"""``python -m benchmarks``: see :mod:`benchmarks.cli` and docs/benchmarks.md."""

import sys

from .cli import main

sys.exit(main())
