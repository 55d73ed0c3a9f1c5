"""nodetape benchmarks: `./run bench` (or `python -m bench`) writes BENCHMARKS.md and bench/results.json."""
