"""Where a replay goes: a jsonl stream, a new tape, or a re-enacted cgroupfs tree."""
