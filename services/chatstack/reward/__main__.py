"""`python -m chatstack.reward`."""

import sys

from chatstack.reward.server import main

if __name__ == "__main__":
    sys.exit(main())
