"""The fleet store: every node's tapes as hive-partitioned Parquet (docs/fleet.md).

layout.py names things (pure functions), storefs.py reaches a directory or an
object store through pyarrow.fs, push.py copies sealed parts in, pusher.py does
it in the background for a live recorder, open.py turns a store back into tapes.
"""
