#!/usr/bin/env python3
"""DuckDB baseline for docs/benchmarks.md: the same per-window, per-merchant, per-currency totals
that `clearhouse net` computes, from the same JSONL file, with DuckDB's parallel NDJSON reader.

It is a lower bound on the work, not an equivalent engine: no validation, no de-duplication, no
refund caps or reversal pairing, no carried debt, no files. Windows are the default calendar
(daily 23:00 Asia/Shanghai cutoff = 15:00 UTC). Usage: duckdb_baseline.py FILE [THREADS]
"""
import sys
import time

import duckdb

path = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
query = f"""
SELECT
  ((epoch(event_time)::BIGINT - 54000) // 86400 + 1) * 86400 + 54000 AS window_end,
  merchant_id,
  currency,
  sum(CASE WHEN type = 'capture' THEN amount ELSE 0 END) AS captures,
  sum(CASE WHEN type = 'refund' THEN amount ELSE 0 END) AS refunds,
  sum(CASE WHEN type = 'refund_reversal' THEN amount ELSE 0 END) AS reversals,
  sum(coalesce(fee, 0)) AS fees,
  count(*) AS instructions
FROM read_json('{path}', format = 'newline_delimited', ignore_errors = true,
               columns = {{type: 'VARCHAR', merchant_id: 'VARCHAR', currency: 'VARCHAR',
                          amount: 'DECIMAL(18,3)', fee: 'DECIMAL(18,3)', event_time: 'TIMESTAMPTZ'}})
WHERE event_time IS NOT NULL AND amount IS NOT NULL
GROUP BY ALL
"""
start = time.perf_counter()
rows = con.execute(query).fetchall()
elapsed = time.perf_counter() - start
lines = sum(1 for _ in open(path, "rb"))
print(f"duckdb {duckdb.__version__}: {lines} lines, {len(rows)} groups in {elapsed:.2f} s "
      f"({lines / elapsed:,.0f} lines/s, {threads} threads)")
