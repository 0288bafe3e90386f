"""`python -m services.photostore index build|status|drop`: the vector index from the command line."""
import sys

from services.photostore import main

sys.exit(main())
