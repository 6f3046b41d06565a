"""What every run needs around its algorithm: config checks, run folders and loggers, checkpoints, the NaN
guard."""
