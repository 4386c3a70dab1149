"""The `chatstack` command's subcommands, one module each: `add(subparsers)` registers its parser
and sets `run`, a function of the parsed arguments that returns the exit status."""
