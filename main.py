"""Train a Wide ResNet or evaluate a checkpoint: ``python main.py -d SVHN``; see ``--help``."""
import sys

from train.cli import main

if __name__ == "__main__":
    sys.exit(main())
