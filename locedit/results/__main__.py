"""``python -m locedit.results collect|analyse …``: :mod:`locedit.results.build`'s command line."""
import sys

from locedit.results.build import main

main(sys.argv[1:])
