"""chatrnn: train recurrent language models on your own text and talk to them in the terminal.

Importing the package must stay cheap (no torch): the CLI's ``--help`` path goes through here.
"""

__version__ = "0.1.0"
