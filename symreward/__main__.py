import sys

from symreward.cli import main

sys.exit(main())
