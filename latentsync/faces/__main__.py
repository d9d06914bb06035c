import sys

from latentsync.faces.cli import main

sys.exit(main())
