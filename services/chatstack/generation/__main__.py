"""`python -m chatstack.generation`."""

import sys

from chatstack.generation.server import main

if __name__ == "__main__":
    sys.exit(main())
