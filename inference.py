#!/usr/bin/env python
"""Grand-challenge container entry point: segment the case in /input, write /output.

Outside Docker: ``python inference.py --input CASE_DIR --output OUT_DIR [--weights DIR] [--task T]``
(or the HNSEG_INPUT / HNSEG_OUTPUT / HNSEG_WEIGHTS environment variables). Exit code 0 on success,
2 on a user error (named error on stderr, nothing written under the output folder).
"""

import sys

from hnseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
