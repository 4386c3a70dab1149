"""`python -m chatstack.safety`."""

import sys

from chatstack.safety.server import main

if __name__ == "__main__":
    sys.exit(main())
