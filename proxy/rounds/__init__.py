"""What shapes the rounds, pure: link estimates, the tuned thresholds, the upload plan, and the log of rounds."""
