"""Hospital batch mode: one model load, many patient folders (``hnseg batch``, docs/batch.md).

discover  case folders / manifest → per case the file behind each input socket
layout    the names batch keeps in the output folder; which case ids are usable
shard     deterministic split of the cases over N workers
locks     run lock per output folder (shards of one plan share it), lock per case
run       the loop: load once, segment each case under its lock, write it atomically, summarize
report    pydantic models of ``report.json`` and ``batch_summary.csv``
cli       argparse glue
"""
