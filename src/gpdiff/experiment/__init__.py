"""The few-shot experiment: the run config tree, stage bookkeeping, the pipeline, reports, bench suites, scoreboard."""
