import sys

from mhubert.cli import main

sys.exit(main())
