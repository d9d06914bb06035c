import sys

from latentsync.inference.cli import main

sys.exit(main())
