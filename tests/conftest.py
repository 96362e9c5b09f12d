import os

# The test suite runs on the CPU, whatever accelerator the machine has.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests compile hundreds of small, short-lived programs: LLVM's optimisation passes cost
# more than they save there (about 2x faster overall). Benchmarks do not set this.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
