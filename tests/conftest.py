import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

# the command line keeps tamed studies in $MEMLESS_CACHE_DIR: in the tests, a folder of this run's
# own (one per xdist worker), never the user's ~/.cache/memless
os.environ["MEMLESS_CACHE_DIR"] = tempfile.mkdtemp(prefix="memless-test-cache-")
os.environ.pop("MEMLESS_NO_CACHE", None)
