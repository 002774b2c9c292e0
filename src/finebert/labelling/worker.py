"""python -m finebert.labelling.worker PROJECT: one fine-tune of a labelling project, in a process of its own."""

import sys

from finebert.labelling.server import worker_main

if __name__ == "__main__":
    worker_main(sys.argv[1])
