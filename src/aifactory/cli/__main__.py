"""python -m aifactory.cli"""

import sys

from . import main

sys.exit(main())
