"""``python -m hw.demo``: see ``hw.demo.run``."""

from hw.demo.run import main

raise SystemExit(main())
