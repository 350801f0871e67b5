import sys

from detectors.runtime.process import main

sys.exit(main(prog="python -m detectors.runtime"))
