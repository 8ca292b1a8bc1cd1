"""``python -m chatrnn.cli``: the same command line as ``chatrnn`` and ``python -m chatrnn``."""

from chatrnn.cli import main

main()
