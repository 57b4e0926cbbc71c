"""``python -m bench``: see bench/run.py (``make bench N=120000 [DB=postgresql://…]``)."""

from bench.run import main

raise SystemExit(main())
