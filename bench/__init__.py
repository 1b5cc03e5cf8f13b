"""`make bench`: performance measurements of the whole stack (see bench/__main__.py and
docs/benchmarks.md). Not part of `make test`."""
