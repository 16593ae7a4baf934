import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

# the command line keeps tamed studies in $MEMLESS_CACHE_DIR: in the tests, a folder of this run's
# own (one per xdist worker), never the user's ~/.cache/memless
os.environ["MEMLESS_CACHE_DIR"] = tempfile.mkdtemp(prefix="memless-test-cache-")
os.environ.pop("MEMLESS_NO_CACHE", None)

# one thread per xdist worker: two workers on two cores, each with threaded OpenMP (PyTorch's spin-waiting
# threads), slow each other down several times over; the numbers do not depend on it
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")
