"""`python -m camstream_cli ...` is `camstream ...` (tests and pods run it so)."""

import sys

from camstream_cli.main import main

sys.exit(main())
