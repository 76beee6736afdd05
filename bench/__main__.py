"""`python -m bench`: the end-to-end benchmark (bench/e2e.py); its options pass through."""

import sys

from bench.e2e import main

sys.exit(main())
