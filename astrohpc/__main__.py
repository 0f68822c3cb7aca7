import sys

from astrohpc.cli import main

sys.exit(main())
