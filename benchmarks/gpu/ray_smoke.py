"""Does this Python run Ray and JAX as a search needs them? One JSON object on stdout.

Starts a local Ray the way the engine does (``include_dashboard=False``), runs one task
and one actor that imports JAX and reports its devices (with one GPU reserved when Ray
sees a GPU, as a search's worker would), and times each step. Reports where Ray was
imported from, so that a run can tell the bundle's Ray from another.

    python benchmarks/gpu/ray_smoke.py [--num-cpus 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-cpus", type=int, default=2)
    args = p.parse_args(argv)
    out: dict = {"python": sys.version.split()[0], "executable": sys.executable}
    t = time.perf_counter()
    import ray

    out.update(ray_version=ray.__version__, ray_path=os.path.dirname(ray.__file__),
               import_ray_s=round(time.perf_counter() - t, 2))
    t = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False,
             num_cpus=args.num_cpus)
    out["init_s"] = round(time.perf_counter() - t, 2)
    try:
        out["resources"] = ray.cluster_resources()
        gpus = int(out["resources"].get("GPU", 0))

        @ray.remote
        def square(x):
            return x * x

        t = time.perf_counter()
        out["task_ok"] = ray.get(square.remote(7), timeout=120) == 49
        out["task_s"] = round(time.perf_counter() - t, 2)

        @ray.remote(num_cpus=1, num_gpus=min(gpus, 1))
        class Probe:
            def devices(self):
                import jax

                return {"backend": jax.default_backend(),
                        "devices": [str(d) for d in jax.devices()],
                        "jax_version": jax.__version__,
                        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

        t = time.perf_counter()
        probe = Probe.remote()
        out["actor"] = ray.get(probe.devices.remote(), timeout=300)
        out["actor_s"] = round(time.perf_counter() - t, 2)
        ray.kill(probe)
    finally:
        t = time.perf_counter()
        ray.shutdown()
        out["shutdown_s"] = round(time.perf_counter() - t, 2)
    print(json.dumps(out, indent=1))
    return 0 if out.get("task_ok") else 1


if __name__ == "__main__":
    sys.exit(main())
