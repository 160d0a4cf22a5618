import sys

from kubedrift.cli import main

sys.exit(main())
