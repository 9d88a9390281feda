"""What shapes the rounds, pure: link estimates, the triggers that end a round, the tuned thresholds, the upload
plan, and the log of rounds."""
