"""``python -m bench`` (``make bench``): the end-to-end data-plane benchmark.

Arguments go to :mod:`bench.pipeline_bench` (``python -m bench --pages 48``). The model-level
and API benchmarks run on their own: ``python -m bench.model_bench``, ``python -m bench.api_bench``.
"""

from bench.pipeline_bench import main

main()
