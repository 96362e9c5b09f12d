import os

# The test suite runs on the CPU, whatever accelerator the machine has.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests compile hundreds of small, short-lived programs: LLVM's optimisation passes cost
# more than they save there (about 2x faster overall). Benchmarks do not set this.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# Tests do not write JAX's persistent compilation cache into the user's cache folder;
# test_evaluate turns it on in a temporary folder to test it.
os.environ.setdefault("PRIMER_SEARCH_COMPILATION_CACHE", "0")
