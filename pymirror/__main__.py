import sys

from pymirror.cli import main

sys.exit(main())
