"""Hospital batch mode: one model load, many patient folders (``hnseg batch``, docs/batch.md).

discover  case folders / manifest → per case the file behind each input socket
shard     deterministic split of the cases over N workers
run       the loop: load once, segment each case, write it atomically, summarize
report    pydantic models of ``report.json`` and ``batch_summary.csv``
cli       argparse glue
"""
