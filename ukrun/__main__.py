import sys

from ukrun.cli import main

sys.exit(main())
