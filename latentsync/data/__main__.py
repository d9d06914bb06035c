import sys

from latentsync.data.cli import main

sys.exit(main())
