"""`python -m chatstack.tokenizer`."""

import sys

from chatstack.tokenizer.server import main

if __name__ == "__main__":
    sys.exit(main())
