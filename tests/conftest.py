import os

# The test suite runs on the CPU, whatever accelerator the machine has.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests compile hundreds of small, short-lived programs: LLVM's optimisation passes cost
# more than they save there (about 2x faster overall). Benchmarks do not set this.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# Tests do not write JAX's persistent compilation cache into the user's cache folder;
# test_evaluate turns it on in a temporary folder to test it.
os.environ.setdefault("PRIMER_SEARCH_COMPILATION_CACHE", "0")

import pytest  # noqa: E402 - after the environment, which JAX reads when first imported


@pytest.fixture
def memorise():
    """``memorise(model, optimizer, steps=40)``: train a language model over 64 tokens on
    one fixed batch of 4 rows of 16 tokens, as the trainer's own step does, and return
    the loss after each step. A block whose gradients reach every part memorises it: its
    loss falls well below where it starts (about ln 64)."""

    def run(model, optimizer, steps: int = 40) -> list[float]:
        import jax.numpy as jnp
        import numpy as np

        from primer_search.fitness.train import make_steps

        init_state, train_step, _ = make_steps(model, optimizer)
        batch = jnp.asarray(np.random.default_rng(0).integers(0, 64, (4, 17)), jnp.int32)
        state = init_state(0, batch)
        losses = []
        for _ in range(steps):
            state, metrics = train_step(state, batch)
            losses.append(float(metrics["loss"]))
        return losses

    return run


@pytest.fixture(scope="module")
def local_ray():
    """Ray started in this process with two CPUs, for one test module; shut down after."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)
    yield
    ray.shutdown()
