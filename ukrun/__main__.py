import gc
import sys

gc.disable()  # as bin/ukrun does, for the same reason: a run ends in execve

from ukrun.cli import main  # noqa: E402

sys.exit(main())
