import gc
import os
import sys

gc.disable()  # as bin/ukrun does, for the same reason: a run ends in execve

if os.getpid() == 1:
    from ukrun.kernel.signals import block_signals

    block_signals()  # as bin/ukrun does, before anything else (ukrun.kernel.signals says why)

from ukrun.cli import main  # noqa: E402

sys.exit(main())
