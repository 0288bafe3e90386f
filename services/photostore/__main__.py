"""`python -m services.photostore index build|status|drop`: the vector index from the command line."""
import sys

from services.photostore.cli import main

sys.exit(main())
