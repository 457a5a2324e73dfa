"""``python -m signalprop``: the command line."""

import sys

from signalprop.cli import main

sys.exit(main())
