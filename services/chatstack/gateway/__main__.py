"""`python -m chatstack.gateway`."""

import sys

from chatstack.gateway.server import main

if __name__ == "__main__":
    sys.exit(main())
