"""Where the packages live: the checkout (or site-packages) holding base/, servers/, ...

Child processes (`python -m servers`, `-m harness.run.worker`, the link emulator) start
there, so `-m` imports the same copy of the code as their parent, installed or not.
"""

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
