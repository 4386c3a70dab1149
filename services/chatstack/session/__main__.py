"""`python -m chatstack.session`."""

import sys

from chatstack.session.server import main

if __name__ == "__main__":
    sys.exit(main())
