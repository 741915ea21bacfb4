"""Intake: suspect servers from CSV files, Shadowserver reports and spam samples.

Parsers stream the file and yield `Suspect`s and `RowError`s; `store` upserts them into Target in
chunks; `services` records the ImportBatch. Only `services` and `tasks` touch the batch.
"""
