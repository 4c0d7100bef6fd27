#!/usr/bin/env python
"""Grand-challenge container entry point: segment the case in /input, write /output.

Outside Docker: ``python inference.py --input CASE_DIR --output OUT_DIR [--weights DIR] [--task T]``
(or the HNSEG_INPUT / HNSEG_OUTPUT / HNSEG_WEIGHTS environment variables); ``-v`` for debug logs.
Exit code 0 on success, 2 on a user error (named error on stderr, nothing written under the output
folder), 143 / 130 when stopped by SIGTERM / SIGINT (``Interrupted: …`` on stderr, no partial file).
"""

import sys

from hnseg.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    verbose = [a for a in args if a in ("-v", "--verbose")]
    sys.exit(main([*verbose, "predict", *[a for a in args if a not in verbose]]))
