"""``python -m fastgd``: the same command line as the ``fastgd`` script."""

import sys

from fastgd.cli import main

sys.exit(main())
