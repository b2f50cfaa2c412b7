"""Prefect flows (segment a scene, train a model, nightly batches) and the ``sceneseg`` command line.

Flows only order the stages of ``pipeline`` and set retries, caching, concurrency and schedules;
every task body is one call into ``pipeline`` or ``models``.
"""
