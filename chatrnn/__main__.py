"""``python -m chatrnn`` (also what ``torchrun -m chatrnn`` launches)."""

from chatrnn.cli import main

if __name__ == "__main__":
    main()
