"""The tape: its format (manifest), writer, reader, retention, snapshots and filesystem helpers.

Above core and schemas, below the recorder, replay, queries and the commands."""
