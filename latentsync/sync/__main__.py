import sys

from latentsync.sync.cli import main

sys.exit(main())
