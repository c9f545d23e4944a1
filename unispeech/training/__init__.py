"""Training-run plumbing around the tasks: loggers, callbacks, resumable data loading."""
