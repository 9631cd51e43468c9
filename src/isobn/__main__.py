"""``python -m isobn``: the `isobn` command, for environments without its console script."""

import sys

from isobn.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
